//! The in-memory index of which lsns a log holds and their terms, without one slot per entry.
//!
//! Lsns are kept as sorted runs of consecutive lsns (a log without gaps is one run) and terms as a list of term
//! boundaries: `(first lsn of the term, term)`. Every boundary's lsn is a stored lsn and the first boundary is at
//! the first stored lsn, so both lists stay tiny whatever the number of entries.

/// Stored lsns as runs, and term boundaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LsnIndex {
    /// Inclusive `(first, last)` runs of consecutive lsns, sorted, disjoint and not adjacent.
    runs: Vec<(u64, u64)>,
    /// `(first lsn, term)`, sorted by lsn; consecutive boundaries have different terms.
    terms: Vec<(u64, u64)>,
}

impl LsnIndex {
    /// Records `lsn` with `term`. The caller guarantees `lsn` is greater than [`LsnIndex::last`].
    pub(crate) fn push(&mut self, lsn: u64, term: u64) {
        debug_assert!(self.last().is_none_or(|(last, _)| lsn > last));
        match self.runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(lsn) => *end = lsn,
            _ => self.runs.push((lsn, lsn)),
        }
        if self.terms.last().is_none_or(|&(_, t)| t != term) {
            self.terms.push((lsn, term));
        }
    }

    /// The highest stored `(lsn, term)`.
    pub(crate) fn last(&self) -> Option<(u64, u64)> {
        let (_, end) = *self.runs.last()?;
        let (_, term) = *self.terms.last()?;
        Some((end, term))
    }

    /// The lowest stored lsn.
    pub(crate) fn first(&self) -> Option<u64> {
        self.runs.first().map(|&(start, _)| start)
    }

    /// Whether `lsn` is stored.
    pub(crate) fn contains(&self, lsn: u64) -> bool {
        let i = self.runs.partition_point(|&(start, _)| start <= lsn);
        i > 0 && self.runs[i - 1].1 >= lsn
    }

    /// The term of the stored entry `lsn`.
    pub(crate) fn term_at(&self, lsn: u64) -> Option<u64> {
        if !self.contains(lsn) {
            return None;
        }
        let i = self.terms.partition_point(|&(start, _)| start <= lsn);
        i.checked_sub(1).map(|i| self.terms[i].1)
    }

    /// Forgets every lsn greater than `lsn`.
    pub(crate) fn truncate_after(&mut self, lsn: u64) {
        let keep = self.runs.partition_point(|&(start, _)| start <= lsn);
        self.runs.truncate(keep);
        if let Some((_, end)) = self.runs.last_mut() {
            *end = (*end).min(lsn);
        }
        let keep = self.terms.partition_point(|&(start, _)| start <= lsn);
        self.terms.truncate(keep);
    }

    /// Forgets every lsn lower than or equal to `lsn`.
    pub(crate) fn remove_through(&mut self, lsn: u64) {
        let drop = self.runs.partition_point(|&(_, end)| end <= lsn);
        self.runs.drain(..drop);
        let Some(first) = self.runs.first_mut() else {
            self.terms.clear();
            return;
        };
        if first.0 <= lsn {
            // `lsn < first.1`, so `lsn + 1` is stored.
            first.0 = lsn + 1;
        }
        let new_first = first.0;
        let covering = self.terms.partition_point(|&(start, _)| start <= new_first);
        if let Some(i) = covering.checked_sub(1) {
            let term = self.terms[i].1;
            self.terms.drain(..=i);
            self.terms.insert(0, (new_first, term));
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.terms.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(u64, u64)]) -> LsnIndex {
        let mut ix = LsnIndex::default();
        for &(lsn, term) in entries {
            ix.push(lsn, term);
        }
        ix
    }

    /// Reference: the same questions answered from the full list.
    fn check(ix: &LsnIndex, entries: &[(u64, u64)]) {
        assert_eq!(ix.first(), entries.first().map(|e| e.0));
        assert_eq!(ix.last(), entries.last().copied());
        let max = entries.last().map_or(0, |e| e.0) + 3;
        for lsn in 0..max {
            let want = entries.iter().find(|e| e.0 == lsn).map(|e| e.1);
            assert_eq!(ix.term_at(lsn), want, "term_at({lsn})");
            assert_eq!(ix.contains(lsn), want.is_some(), "contains({lsn})");
        }
    }

    const ENTRIES: &[(u64, u64)] = &[
        (3, 1),
        (4, 1),
        (5, 2),
        (8, 2),
        (9, 2),
        (10, 5),
        (20, 5),
        (21, 6),
        (22, 6),
    ];

    #[test]
    fn runs_and_terms_answer_like_a_full_list() {
        let ix = index(ENTRIES);
        assert_eq!(ix.runs, vec![(3, 5), (8, 10), (20, 22)]);
        assert_eq!(ix.terms, vec![(3, 1), (5, 2), (10, 5), (21, 6)]);
        check(&ix, ENTRIES);
        check(&LsnIndex::default(), &[]);
    }

    #[test]
    fn truncate_after_every_point() {
        for cut in 0..25 {
            let mut ix = index(ENTRIES);
            ix.truncate_after(cut);
            let want: Vec<_> = ENTRIES.iter().copied().filter(|e| e.0 <= cut).collect();
            check(&ix, &want);
            assert_eq!(ix, index(&want), "cut {cut}");
        }
    }

    #[test]
    fn remove_through_every_point() {
        for cut in 0..25 {
            let mut ix = index(ENTRIES);
            ix.remove_through(cut);
            let want: Vec<_> = ENTRIES.iter().copied().filter(|e| e.0 > cut).collect();
            check(&ix, &want);
            assert_eq!(ix, index(&want), "cut {cut}");
        }
    }

    #[test]
    fn push_after_truncate_and_clear() {
        let mut ix = index(ENTRIES);
        ix.truncate_after(8);
        ix.push(9, 7);
        check(&ix, &[(3, 1), (4, 1), (5, 2), (8, 2), (9, 7)]);
        ix.clear();
        check(&ix, &[]);
        ix.push(1, 1);
        check(&ix, &[(1, 1)]);
    }
}
