//! Seeded synthetic activations with planted effects, for the tests of this module.

use super::stats::{Category, WordActivations};
use rand::{Rng, SeedableRng};

/// Neurons more active for category 0 ("verbs"), by +3.
pub const VERB_NEURONS: [usize; 2] = [3, 7];
/// Neuron more active for category 1 ("nouns"), by +3.
pub const NOUN_NEURON: usize = 11;
/// Neuron with +6 for every word: a vertical band of one sign.
pub const BAND_NEURON: usize = 20;
/// Offset of every activation.
pub const GLOBAL_OFFSET: f32 = -1.0;
/// Noise standard deviation.
pub const NOISE: f64 = 0.5;
/// The word that drives neuron 3 most (an extra +2).
pub const TOP_VERB_WORD: &str = "verb2";

/// 2 categories × 10 words × 50 neurons: N(0, 0.5) noise plus the planted effects above.
pub fn activations() -> WordActivations {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let mut normal = move || {
        // Box–Muller.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let width = 50;
    let categories = vec![
        Category { name: "verbs".into(), words: (0..10).map(|i| format!("verb{i}")).collect() },
        Category { name: "nouns".into(), words: (0..10).map(|i| format!("noun{i}")).collect() },
    ];
    let mut rows = Vec::new();
    for (c, cat) in categories.iter().enumerate() {
        for word in &cat.words {
            for j in 0..width {
                let mut v = GLOBAL_OFFSET + (NOISE * normal()) as f32;
                if c == 0 && VERB_NEURONS.contains(&j) {
                    v += 3.0;
                }
                if c == 0 && j == VERB_NEURONS[0] && word == TOP_VERB_WORD {
                    v += 2.0;
                }
                if c == 1 && j == NOUN_NEURON {
                    v += 3.0;
                }
                if j == BAND_NEURON {
                    v += 6.0;
                }
                rows.push(v);
            }
        }
    }
    WordActivations::new(categories, width, rows).expect("consistent synthetic shape")
}
