//! The numbers behind the seed's three observations, computed once by [`findings`] from the
//! activations and their per-neuron statistics: (1) systematic offsets, (2) vertical bands of the
//! heatmap, (3) neurons preferring one of the first two categories. No text: `report` renders
//! these, `summary` serializes them.

use super::stats::{median, neuron_means, NeuronStats, WordActivations};
use serde::Serialize;

/// Significance level of the counts in observation (3).
pub const ALPHA: f64 = 0.05;
/// Band rule: a neuron's mean must lie more than this many robust SDs from the median mean...
pub const BAND_ROBUST_Z: f64 = 3.0;
/// ...where a robust SD is this factor times the MAD (the normal-consistency constant)...
pub const MAD_TO_SD: f64 = 1.4826;
/// ...and at least this share of all words must have an activation of the sign of that mean.
pub const BAND_SIGN_SHARE: f64 = 0.9;
/// Neurons listed per preferred category, and words listed per neuron.
pub const TOP_PREFERRING: usize = 5;
pub const TOP_WORDS: usize = 3;

/// A neuron that stands out as a vertical band of the heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub neuron: usize,
    /// Mean over all words.
    pub mean: f64,
    /// `(mean − median of neuron means) / (1.4826 · MAD of neuron means)`.
    pub robust_z: f64,
    /// Share of all words whose activation has the sign of `mean`.
    pub sign_share: f64,
}

/// A word and its activation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrivingWord {
    pub word: String,
    pub value: f64,
}

/// A neuron preferring one category, with the words of that category that drive it most.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preferring {
    pub neuron: usize,
    pub t: f64,
    pub cohen_d: f64,
    pub q_bh: f64,
    pub p_bonferroni: f64,
    /// Mean in the preferred category and in the other one of the test.
    pub mean_preferred: f64,
    pub mean_other: f64,
    /// The words of the preferred category with the largest activation, largest first.
    pub top_words: Vec<DrivingWord>,
}

/// The numbers behind the three observations, computed once by [`findings`].
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    pub category_names: Vec<String>,
    pub category_sizes: Vec<usize>,
    pub n_neurons: usize,
    // (1) Systematic offsets.
    /// Share of neurons whose mean over all words is negative.
    pub share_negative_neurons: f64,
    /// Median over neurons of the per-neuron mean over all words.
    pub median_neuron_mean: f64,
    /// Mean over neurons of the per-neuron mean (the grand mean).
    pub mean_neuron_mean: f64,
    /// Share of all individual activations (word × neuron) that are negative.
    pub share_negative_activations: f64,
    // (2) Vertical bands.
    /// `1.4826 · MAD` of the neuron means (the robust SD of the band rule).
    pub band_scale: f64,
    /// Band neurons, largest |robust z| first.
    pub bands: Vec<Band>,
    // (3) Preference between category 0 and category 1.
    pub alpha: f64,
    /// Neurons with BH q < alpha, and how many of them prefer category 0 and category 1.
    pub n_sig_bh: usize,
    pub n_sig_bh_first: usize,
    pub n_sig_bh_second: usize,
    /// Neurons with Bonferroni p < alpha, and how many of them prefer category 0 and 1.
    pub n_sig_bonferroni: usize,
    pub n_sig_bonferroni_first: usize,
    pub n_sig_bonferroni_second: usize,
    /// Up to 5 neurons with the largest positive t (prefer category 0), largest first.
    pub top_first: Vec<Preferring>,
    /// Up to 5 neurons with the most negative t (prefer category 1), most negative first.
    pub top_second: Vec<Preferring>,
}

impl Findings {
    /// The name of category `c`, or `category c` when there is none.
    pub fn name(&self, c: usize) -> String {
        self.category_names.get(c).cloned().unwrap_or_else(|| format!("category {c}"))
    }
}

/// Computes the findings from the activations and their [`neuron_stats`](super::stats::neuron_stats).
///
/// - (1) offsets: from the per-neuron mean over all words (each word weighs the same);
/// - (2) bands: a neuron is a band when `|mean − median(means)| > 3 × 1.4826 × MAD(means)` and at
///   least 90% of all words have an activation of the sign of its mean (a MAD of 0 makes every
///   deviating mean pass the first condition);
/// - (3) preference: counts at BH q < 0.05 and Bonferroni p < 0.05, and the top 5 neurons per
///   direction of t with the 3 words of the preferred category that activate them most.
///
/// Statistics naming a neuron outside the activations are ignored.
pub fn findings(acts: &WordActivations, stats: &[NeuronStats]) -> Findings {
    let width = if acts.validate().is_ok() { acts.width } else { 0 };
    let stats: Vec<&NeuronStats> = stats.iter().filter(|s| s.neuron < width).collect();
    let means = if width > 0 { neuron_means(acts) } else { vec![] };
    let n_means = means.len().max(1) as f64;
    let share_negative_neurons = means.iter().filter(|m| **m < 0.0).count() as f64 / n_means;
    let median_neuron_mean = median(&means);
    let mean_neuron_mean = means.iter().sum::<f64>() / n_means;
    let share_negative_activations = if width > 0 {
        acts.rows.iter().filter(|v| **v < 0.0).count() as f64 / acts.rows.len().max(1) as f64
    } else {
        f64::NAN
    };

    // (2) Bands.
    let centre = median_neuron_mean;
    let deviations: Vec<f64> = means.iter().map(|m| (m - centre).abs()).collect();
    let band_scale = MAD_TO_SD * median(&deviations);
    let n_words = acts.n_words().max(1) as f64;
    let mut bands: Vec<Band> = means
        .iter()
        .enumerate()
        .filter_map(|(j, &mean)| {
            let dev = mean - centre;
            let robust_z = if band_scale > 0.0 {
                dev / band_scale
            } else if dev == 0.0 {
                0.0
            } else {
                dev.signum() * f64::INFINITY
            };
            if robust_z.abs() <= BAND_ROBUST_Z || mean == 0.0 {
                return None;
            }
            let same = acts.rows[j..].iter().step_by(width).filter(|v| (**v as f64) * mean > 0.0).count();
            let sign_share = same as f64 / n_words;
            (sign_share >= BAND_SIGN_SHARE).then_some(Band { neuron: j, mean, robust_z, sign_share })
        })
        .collect();
    bands.sort_by(|a, b| b.robust_z.abs().total_cmp(&a.robust_z.abs()).then(a.neuron.cmp(&b.neuron)));

    // (3) Preference.
    let sig_bh: Vec<&&NeuronStats> = stats.iter().filter(|s| s.q_bh < ALPHA).collect();
    let sig_bonf: Vec<&&NeuronStats> = stats.iter().filter(|s| s.p_bonferroni < ALPHA).collect();
    let two = acts.categories.len() >= 2;
    let preferring = |first: bool| -> Vec<Preferring> {
        if !two {
            return vec![];
        }
        let (c, other) = if first { (0, 1) } else { (1, 0) };
        let mut chosen: Vec<&&NeuronStats> =
            stats.iter().filter(|s| if first { s.t > 0.0 } else { s.t < 0.0 }).collect();
        chosen.sort_by(|a, b| {
            let order = if first { b.t.total_cmp(&a.t) } else { a.t.total_cmp(&b.t) };
            order.then(a.neuron.cmp(&b.neuron))
        });
        chosen
            .into_iter()
            .take(TOP_PREFERRING)
            .map(|s| {
                let values = acts.neuron_values(c, s.neuron);
                let mut words: Vec<DrivingWord> = acts.categories[c]
                    .words
                    .iter()
                    .zip(values)
                    .map(|(w, value)| DrivingWord { word: w.clone(), value })
                    .collect();
                words.sort_by(|a, b| b.value.total_cmp(&a.value));
                words.truncate(TOP_WORDS);
                Preferring {
                    neuron: s.neuron,
                    t: s.t,
                    cohen_d: s.cohen_d,
                    q_bh: s.q_bh,
                    p_bonferroni: s.p_bonferroni,
                    mean_preferred: s.means.get(c).copied().unwrap_or(f64::NAN),
                    mean_other: s.means.get(other).copied().unwrap_or(f64::NAN),
                    top_words: words,
                }
            })
            .collect()
    };

    Findings {
        category_names: acts.categories.iter().map(|c| c.name.clone()).collect(),
        category_sizes: acts.categories.iter().map(|c| c.words.len()).collect(),
        n_neurons: width,
        share_negative_neurons,
        median_neuron_mean,
        mean_neuron_mean,
        share_negative_activations,
        band_scale,
        bands,
        alpha: ALPHA,
        n_sig_bh: sig_bh.len(),
        n_sig_bh_first: sig_bh.iter().filter(|s| s.t > 0.0).count(),
        n_sig_bh_second: sig_bh.iter().filter(|s| s.t < 0.0).count(),
        n_sig_bonferroni: sig_bonf.len(),
        n_sig_bonferroni_first: sig_bonf.iter().filter(|s| s.t > 0.0).count(),
        n_sig_bonferroni_second: sig_bonf.iter().filter(|s| s.t < 0.0).count(),
        top_first: preferring(true),
        top_second: preferring(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::stats::neuron_stats;
    use crate::challenge::synthetic;

    fn synthetic_findings() -> Findings {
        let acts = synthetic::activations();
        let stats = neuron_stats(&acts).unwrap();
        findings(&acts, &stats)
    }

    #[test]
    fn findings_recover_the_planted_offset() {
        let f = synthetic_findings();
        // Every neuron but the four planted positive ones has a mean near the offset −1.
        assert_eq!(f.share_negative_neurons, 46.0 / 50.0);
        assert!(
            (f.median_neuron_mean - synthetic::GLOBAL_OFFSET as f64).abs() < 0.1,
            "{}",
            f.median_neuron_mean
        );
        assert!(f.share_negative_activations > 0.85, "{}", f.share_negative_activations);
        assert_eq!(f.category_sizes, vec![10, 10]);
        assert_eq!(f.n_neurons, 50);
    }

    #[test]
    fn findings_recover_the_planted_band_only() {
        let f = synthetic_findings();
        let bands: Vec<usize> = f.bands.iter().map(|b| b.neuron).collect();
        // The verb/noun neurons lie far from the median too, but change sign between categories.
        assert_eq!(bands, vec![synthetic::BAND_NEURON]);
        assert_eq!(f.bands[0].sign_share, 1.0);
        assert!(f.bands[0].robust_z > 10.0, "{:?}", f.bands[0]);
        assert!(f.band_scale > 0.0 && f.band_scale < 0.5, "{}", f.band_scale);
    }

    #[test]
    fn findings_recover_the_planted_preferences() {
        let f = synthetic_findings();
        assert_eq!((f.n_sig_bonferroni, f.n_sig_bonferroni_first, f.n_sig_bonferroni_second), (3, 2, 1));
        assert_eq!((f.n_sig_bh, f.n_sig_bh_first, f.n_sig_bh_second), (3, 2, 1));
        let mut first: Vec<usize> = f.top_first[..2].iter().map(|p| p.neuron).collect();
        first.sort();
        assert_eq!(first, synthetic::VERB_NEURONS.to_vec());
        assert_eq!(f.top_second[0].neuron, synthetic::NOUN_NEURON);
        assert_eq!(f.top_first.len(), TOP_PREFERRING);
        assert!(f.top_first.iter().all(|p| p.t > 0.0) && f.top_second.iter().all(|p| p.t < 0.0));
        assert!(f.top_first.windows(2).all(|w| w[0].t >= w[1].t));
        assert!(f.top_second.windows(2).all(|w| w[0].t <= w[1].t));
        // The planted extra activation makes one verb the strongest driver of neuron 3.
        let n3 = f.top_first.iter().find(|p| p.neuron == synthetic::VERB_NEURONS[0]).unwrap();
        assert_eq!(n3.top_words.len(), TOP_WORDS);
        assert_eq!(n3.top_words[0].word, synthetic::TOP_VERB_WORD);
        assert!(n3.top_words.iter().all(|w| w.word.starts_with("verb")));
        assert!(n3.top_words.windows(2).all(|w| w[0].value >= w[1].value));
        assert!(n3.mean_preferred > n3.mean_other + 2.0);
        let n11 = &f.top_second[0];
        assert!(n11.top_words.iter().all(|w| w.word.starts_with("noun")));
    }

    #[test]
    fn findings_survive_degenerate_input() {
        let acts = synthetic::activations();
        let f = findings(&acts, &[]);
        assert_eq!((f.n_sig_bh, f.top_first.len()), (0, 0));
        let broken = WordActivations { rows: vec![], ..acts };
        let f = findings(&broken, &[]);
        assert_eq!(f.n_neurons, 0);
        assert!(f.bands.is_empty());
    }
}
