//! Which key each call touches: ranks drawn from a Zipf distribution, with a small seeded generator so that a run
//! is reproducible from `--seed`.
//!
//! Both are written out here rather than taken from `rand`/`rand_distr`: together they are a few lines, the
//! sequence of keys then depends on nothing but this file (no crate upgrade changes a benchmark's key stream), and
//! the load generator gains no dependency.

use anyhow::bail;

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014): one add and a
/// mixing function per draw. Not cryptographic; plenty for choosing keys, and any seed (zero included) is fine.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator that starts from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The generator of client `client` in a run seeded with `seed`: distinct, reproducible streams per client.
    pub fn for_client(seed: u64, client: usize) -> SplitMix64 {
        // Run the client number through the mixer once so that neighbouring clients do not start from
        // neighbouring states.
        let mut mixer = SplitMix64::new(seed ^ (client as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        SplitMix64::new(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` (53 random bits, the precision of an `f64`).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over the ranks `1..=n`: rank k is drawn with probability `k^-s / H(n, s)`, where `H(n, s)` is the sum
/// of `j^-s` over every rank j. Rank 1 is the hottest key; s = 0 is uniform; s near 1 is the usual model of cache
/// traffic (a few keys take most reads).
///
/// Sampling inverts the cumulative distribution, precomputed as a table: exact for any s >= 0 and any n (unlike
/// rejection samplers, which approximate for some parameters), O(log n) per draw, 8 bytes per key, built once
/// per run and shared by every client.
#[derive(Debug, Clone)]
pub struct Zipf {
    /// `cumulative[i]` = the sum of `j^-s` for j in `1..=i+1` (not normalised: draws scale the uniform instead).
    cumulative: Vec<f64>,
}

impl Zipf {
    /// The distribution over `1..=n` with exponent `s`.
    pub fn new(n: u64, s: f64) -> anyhow::Result<Zipf> {
        if n == 0 {
            bail!("Zipf needs at least one key");
        }
        if !(s.is_finite() && s >= 0.0) {
            bail!("the Zipf exponent must be a finite number >= 0, not {s}");
        }
        let Ok(len) = usize::try_from(n) else {
            bail!("{n} keys do not fit in memory");
        };
        let mut cumulative = Vec::with_capacity(len);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cumulative.push(sum);
        }
        Ok(Zipf { cumulative })
    }

    /// The probability that a draw is one of the `n` hottest ranks (1 for n >= the number of ranks).
    pub fn top_share(&self, n: u64) -> f64 {
        let (Some(total), Ok(n)) = (self.cumulative.last(), usize::try_from(n)) else {
            return 1.0;
        };
        match n.min(self.cumulative.len()) {
            0 => 0.0,
            n => self.cumulative[n - 1] / total,
        }
    }

    /// One rank in `1..=n`.
    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.next_f64() * total;
        // The first rank whose cumulative weight exceeds u; the clamp guards against u rounding up to the total.
        let index = self.cumulative.partition_point(|c| *c <= u);
        (index.min(self.cumulative.len().saturating_sub(1)) + 1) as u64
    }

    /// The probability of rank `k` (0 outside `1..=n`).
    #[cfg(test)]
    pub fn probability(&self, k: u64) -> f64 {
        let (Some(total), Ok(i)) = (self.cumulative.last(), usize::try_from(k)) else {
            return 0.0;
        };
        if i == 0 || i > self.cumulative.len() {
            return 0.0;
        }
        let below = if i >= 2 { self.cumulative[i - 2] } else { 0.0 };
        (self.cumulative[i - 1] - below) / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // SplitMix64's first outputs for seed 1234567, as an independent implementation of the algorithm gives them.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        let mut rng = SplitMix64::new(7);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }

    #[test]
    fn clients_get_distinct_reproducible_streams() {
        let draw = |seed, client| {
            let mut rng = SplitMix64::for_client(seed, client);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
        assert_ne!(draw(1, 0), draw(2, 0));
    }

    #[test]
    fn frequencies_follow_the_distribution() {
        let zipf = Zipf::new(100, 0.99).unwrap();
        let mut rng = SplitMix64::new(42);
        let draws = 400_000;
        let mut counts = vec![0u64; 101];
        for _ in 0..draws {
            let k = zipf.sample(&mut rng);
            assert!((1..=100).contains(&k), "{k}");
            counts[k as usize] += 1;
        }
        for k in [1u64, 2, 10, 50, 100] {
            let expected = zipf.probability(k) * draws as f64;
            let seen = counts[k as usize] as f64;
            // Five standard deviations of a binomial count.
            let sigma = (expected * (1.0 - zipf.probability(k))).sqrt();
            assert!(
                (seen - expected).abs() < 5.0 * sigma,
                "rank {k}: {seen} draws, expected {expected:.0}"
            );
        }
        assert!(counts[1] > counts[2] && counts[2] > counts[10] && counts[10] > counts[100]);
        let total: f64 = (1..=100).map(|k| zipf.probability(k)).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        // Rank 1 of Zipf(0.99) over 100 keys: 1 / H(100, 0.99) = 0.18887...
        assert!(
            (zipf.probability(1) - 0.18887).abs() < 1e-4,
            "{}",
            zipf.probability(1)
        );
    }

    #[test]
    fn exponent_zero_is_uniform_and_one_key_is_always_drawn() {
        let uniform = Zipf::new(4, 0.0).unwrap();
        for k in 1..=4 {
            assert!((uniform.probability(k) - 0.25).abs() < 1e-12);
        }
        assert_eq!(uniform.probability(0), 0.0);
        assert_eq!(uniform.probability(5), 0.0);
        let one = Zipf::new(1, 1.5).unwrap();
        let mut rng = SplitMix64::new(3);
        assert!((0..100).all(|_| one.sample(&mut rng) == 1));
        assert_eq!(one.top_share(1), 1.0);
        assert_eq!(uniform.top_share(0), 0.0);
        assert!((uniform.top_share(2) - 0.5).abs() < 1e-12);
        assert_eq!(uniform.top_share(9), 1.0);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(10, -0.5).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
        assert!(Zipf::new(10, f64::INFINITY).is_err());
    }
}
