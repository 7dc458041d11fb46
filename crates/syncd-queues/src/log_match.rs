//! Where two shard logs agree: the pure comparison behind catch-up and takeover.
//!
//! Like raft's log matching: one term has exactly one owner writing (a would-be owner gets promises for a fresh
//! term before it writes), so two logs holding an entry with the same lsn and term hold the same entries up to it.

use crate::wire::LogSummary;

/// The term of the entry at `lsn` in a log described by `summary`, if it holds that entry.
pub fn term_at(summary: &LogSummary, lsn: u64) -> Option<u64> {
    if lsn == 0 || lsn < summary.first_lsn || lsn > summary.last.lsn {
        return None;
    }
    summary
        .terms
        .iter()
        .take_while(|(first, _)| *first <= lsn)
        .last()
        .map(|(_, term)| *term)
}

/// The first lsn of the run of same-term entries containing `lsn`.
fn run_start(summary: &LogSummary, lsn: u64) -> u64 {
    summary
        .terms
        .iter()
        .take_while(|(first, _)| *first <= lsn)
        .last()
        .map(|(first, _)| (*first).max(summary.first_lsn))
        .unwrap_or(summary.first_lsn)
}

/// The highest lsn both logs hold with the same term (everything up to it is identical); 0 if none.
pub fn match_point(a: &LogSummary, b: &LogSummary) -> u64 {
    let mut lsn = a.last.lsn.min(b.last.lsn);
    loop {
        match (term_at(a, lsn), term_at(b, lsn)) {
            (Some(x), Some(y)) if x == y => return lsn,
            (Some(_), Some(_)) => {
                lsn = run_start(a, lsn).max(run_start(b, lsn)).saturating_sub(1);
            }
            _ => return 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Position;

    fn log(first: u64, last: (u64, u64), terms: &[(u64, u64)]) -> LogSummary {
        LogSummary {
            last: Position {
                lsn: last.0,
                term: last.1,
            },
            first_lsn: first,
            terms: terms.to_vec(),
        }
    }

    #[test]
    fn identical_logs_match_at_the_shorter_end() {
        let a = log(1, (10, 1), &[(1, 1)]);
        let b = log(1, (7, 1), &[(1, 1)]);
        assert_eq!(match_point(&a, &b), 7);
        assert_eq!(match_point(&b, &a), 7);
    }

    #[test]
    fn a_divergent_suffix_is_cut_at_the_term_change() {
        // Old owner wrote 1..=12 in term 1; the new owner took over after 10 and wrote 11.. in term 2.
        let old = log(1, (12, 1), &[(1, 1)]);
        let new = log(1, (15, 2), &[(1, 1), (11, 2)]);
        assert_eq!(match_point(&old, &new), 10);
        assert_eq!(term_at(&new, 11), Some(2));
        assert_eq!(term_at(&new, 10), Some(1));
        assert_eq!(term_at(&new, 16), None);
    }

    #[test]
    fn empty_or_purged_logs_match_nothing() {
        let empty = LogSummary::default();
        let a = log(1, (5, 1), &[(1, 1)]);
        assert_eq!(match_point(&empty, &a), 0);
        let purged = log(100, (120, 3), &[(1, 1), (90, 3)]);
        assert_eq!(match_point(&a, &purged), 0);
    }

    #[test]
    fn several_term_changes() {
        let a = log(1, (30, 4), &[(1, 1), (10, 2), (20, 4)]);
        let b = log(1, (25, 3), &[(1, 1), (10, 2), (18, 3)]);
        assert_eq!(match_point(&a, &b), 17);
    }
}
