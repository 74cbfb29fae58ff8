//! How many significant neurons chance alone gives: the labels of the two tested categories are
//! shuffled `n` times (seeded), each shuffle gets the whole per-neuron test again, and the
//! observed counts at BH q < α and Bonferroni p < α are set against the counts under shuffled
//! labels (their mean and 95th percentile, and a permutation p-value).
//!
//! The shuffles, so that anyone can recompute them: the words of category 0 then category 1 are
//! numbered 0..n₀+n₁ in list order; with `ChaCha8Rng::seed_from_u64(seed)`, permutation i is the
//! identity order `0..n₀+n₁` shuffled by rand's `SliceRandom::shuffle` (Fisher–Yates) with the
//! generator as the previous permutations left it; its first n₀ words form category 0.

use super::findings::ALPHA;
use super::stats::{benjamini_hochberg, bonferroni, quantile, t_two_sided_p, WordActivations};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

/// Label shuffles unless told otherwise.
pub const DEFAULT_PERMUTATIONS: usize = 1000;
/// The generator's seed unless told otherwise.
pub const DEFAULT_SEED: u64 = 0;

/// Below this |t| a two-sided p is above 0.05 for any degrees of freedom (the normal
/// distribution's 97.5th percentile is 1.95996, and Student's t has heavier tails), so such a
/// neuron can be neither BH- nor Bonferroni-significant at α = 0.05 and its p need not be
/// computed: it is counted as 1, which changes neither count.
const T_NEVER_SIGNIFICANT: f64 = 1.959;

/// Neurons found significant by each correction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Neurons with BH q < α.
    pub bh: usize,
    /// Neurons with Bonferroni p (min(1, m·p)) < α.
    pub bonferroni: usize,
}

impl Counts {
    /// The counts for two-sided p-values over all neurons (the rules of the report's counts).
    pub fn of(p: &[f64]) -> Counts {
        Counts {
            bh: benjamini_hochberg(p).iter().filter(|q| **q < ALPHA).count(),
            bonferroni: bonferroni(p).iter().filter(|b| **b < ALPHA).count(),
        }
    }
}

/// An observed count against its null distribution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgainstNull {
    pub observed: usize,
    pub null_mean: f64,
    /// The null's 95th percentile (linear interpolation between order statistics, as numpy).
    pub null_p95: f64,
    /// `(1 + #{shuffles with a count ≥ observed}) / (n + 1)`.
    pub p_value: f64,
}

impl AgainstNull {
    fn new(observed: usize, null: &[usize]) -> AgainstNull {
        let values: Vec<f64> = null.iter().map(|&c| c as f64).collect();
        let at_least = null.iter().filter(|&&c| c >= observed).count();
        AgainstNull {
            observed,
            null_mean: values.iter().sum::<f64>() / values.len() as f64,
            null_p95: quantile(&values, 0.95),
            p_value: (1 + at_least) as f64 / (null.len() + 1) as f64,
        }
    }
}

/// The permutation test's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PermutationTest {
    pub n: usize,
    pub seed: u64,
    pub bh: AgainstNull,
    pub bonferroni: AgainstNull,
    /// Each shuffle's counts, in order.
    #[serde(skip)]
    pub null: Vec<Counts>,
}

/// The shuffled word orders of the test (see the module's documentation).
pub fn label_permutations(n_words: usize, n: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut order: Vec<usize> = (0..n_words).collect();
            order.shuffle(&mut rng);
            order
        })
        .collect()
}

/// Two-sided Welch p-values of every neuron with the words of `order[..n_first]` as category 0
/// and the rest as category 1, counted. `columns[j]` holds neuron j's value for every word,
/// centred on the neuron's mean over all words (so that variances from sums of squares keep
/// their precision), and `totals[j]` its sum and sum of squares.
fn counts_for(columns: &[Vec<f64>], totals: &[(f64, f64)], order: &[usize], n_first: usize) -> Counts {
    let (na, nb) = (n_first as f64, (order.len() - n_first) as f64);
    let p: Vec<f64> = columns
        .iter()
        .zip(totals)
        .map(|(values, &(sum, squares))| {
            let (mut sa, mut qa) = (0.0, 0.0);
            for &w in &order[..n_first] {
                let v = values[w];
                sa += v;
                qa += v * v;
            }
            let (sb, qb) = (sum - sa, squares - qa);
            let (ma, mb) = (sa / na, sb / nb);
            let va = ((qa - sa * ma) / (na - 1.0)).max(0.0);
            let vb = ((qb - sb * mb) / (nb - 1.0)).max(0.0);
            let (ea, eb) = (va / na, vb / nb);
            let se2 = ea + eb;
            if se2 == 0.0 {
                // Both groups constant: significant only if their means differ (welch_t_test's rule).
                return if ma == mb { 1.0 } else { 0.0 };
            }
            let t = (ma - mb) / se2.sqrt();
            if t.abs() < T_NEVER_SIGNIFICANT {
                return 1.0;
            }
            let (r, q) = (ea / se2, eb / se2);
            let df = 1.0 / (r * r / (na - 1.0) + q * q / (nb - 1.0));
            t_two_sided_p(t, df)
        })
        .collect();
    Counts::of(&p)
}

/// Each neuron's values for the words of categories 0 and 1, centred on their mean, with the
/// sum and sum of squares of the centred values.
fn centred_columns(acts: &WordActivations) -> (Vec<Vec<f64>>, Vec<(f64, f64)>) {
    (0..acts.width)
        .map(|j| {
            let mut values = acts.neuron_values(0, j);
            values.extend(acts.neuron_values(1, j));
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            values.iter_mut().for_each(|v| *v -= mean);
            let totals = (values.iter().sum(), values.iter().map(|v| v * v).sum());
            (values, totals)
        })
        .unzip()
}

/// Shuffles the labels of categories 0 and 1 of `acts` `n` times and counts the significant
/// neurons each time; `observed` are the counts with the true labels. `n` must be at least 1.
pub fn permutation_test(acts: &WordActivations, observed: Counts, n: usize, seed: u64) -> PermutationTest {
    assert!(n > 0, "a permutation test needs at least one shuffle");
    let n_first = acts.categories[0].words.len();
    let n_words = n_first + acts.categories[1].words.len();
    let (columns, totals) = centred_columns(acts);
    let orders = label_permutations(n_words, n, seed);
    // Shuffles are independent: they are split among threads, each result kept in its place.
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(n);
    let per_thread = n.div_ceil(threads);
    let null: Vec<Counts> = std::thread::scope(|scope| {
        let handles: Vec<_> = orders
            .chunks(per_thread)
            .map(|chunk| {
                let (columns, totals) = (&columns, &totals);
                scope.spawn(move || {
                    chunk.iter().map(|o| counts_for(columns, totals, o, n_first)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a permutation thread panicked")).collect()
    });
    let bh: Vec<usize> = null.iter().map(|c| c.bh).collect();
    let bonferroni: Vec<usize> = null.iter().map(|c| c.bonferroni).collect();
    PermutationTest {
        n,
        seed,
        bh: AgainstNull::new(observed.bh, &bh),
        bonferroni: AgainstNull::new(observed.bonferroni, &bonferroni),
        null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::findings::findings;
    use crate::challenge::stats::neuron_stats;
    use crate::challenge::synthetic;

    #[test]
    fn the_identity_order_gives_the_observed_counts() {
        let acts = synthetic::activations();
        let stats = neuron_stats(&acts).unwrap();
        let f = findings(&acts, &stats);
        let (columns, totals) = centred_columns(&acts);
        let identity: Vec<usize> = (0..20).collect();
        assert_eq!(
            counts_for(&columns, &totals, &identity, 10),
            Counts { bh: f.n_sig_bh, bonferroni: f.n_sig_bonferroni }
        );
    }

    #[test]
    fn planted_effects_stand_out_of_the_null() {
        let acts = synthetic::activations();
        let test = permutation_test(&acts, Counts { bh: 3, bonferroni: 3 }, 200, 5);
        assert_eq!(test.null.len(), 200);
        assert!(test.bh.null_mean < 1.0, "{test:?}");
        assert!(test.bh.null_p95 <= 2.0, "{test:?}");
        // No shuffle of 10 + 10 words finds 3 neurons as strong as the planted ones: p = 1/201.
        assert_eq!(test.bh.p_value, 1.0 / 201.0);
        // The same seed gives the same shuffles and counts; another seed other shuffles.
        assert_eq!(permutation_test(&acts, Counts { bh: 3, bonferroni: 3 }, 200, 5), test);
        assert_ne!(label_permutations(20, 3, 5), label_permutations(20, 3, 6));
    }

    #[test]
    fn null_summaries_follow_their_definitions() {
        let s = AgainstNull::new(2, &[0, 1, 2, 3, 0]);
        assert_eq!(s.null_mean, 1.2);
        assert_eq!(s.p_value, 3.0 / 6.0);
        assert!((s.null_p95 - 2.8).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn the_shortcut_never_changes_a_count() {
        // Welch's degrees of freedom are at least 1 with two words a category; even with the
        // heaviest tails that allows, |t| below the cut gives p above 0.05.
        use statrs::distribution::{ContinuousCDF, StudentsT};
        for df in [1.0, 2.0, 5.0, 30.0, 1e6] {
            let p = 2.0 * StudentsT::new(0.0, 1.0, df).unwrap().sf(T_NEVER_SIGNIFICANT);
            assert!(p > 0.05, "df {df}: p {p}");
        }
    }
}
