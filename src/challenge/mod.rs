//! The grammar-tuning challenge: word lists → activations → statistics → CSV, PNG, report.

pub mod control;
pub mod permutation;
pub mod plots;
pub mod profiles;
pub mod report;
pub mod run;
pub mod stats;
#[cfg(test)]
pub(crate) mod synthetic;

pub use run::{run_challenge, CategorySpec, ChallengeArgs, ChallengeOutcome};

/// File names of the challenge outputs inside the output folder (the report links to them).
pub const ACTIVATIONS_NPY: &str = "activations.npy";
pub const ACTIVATIONS_SAFETENSORS: &str = "activations.safetensors";
pub const NEURONS_CSV: &str = "neurons.csv";
pub const HEATMAP_PNG: &str = "heatmap.png";
pub const TOP_NEURONS_PNG: &str = "top_neurons.png";
pub const OFFSETS_PNG: &str = "offsets.png";
pub const REPORT_MD: &str = "report.md";
