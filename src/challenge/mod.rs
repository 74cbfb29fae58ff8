//! The grammar-tuning challenge: word lists → activations → statistics → CSV, PNG, report.
//!
//! Each module imports only modules before it (no circle): `files`, `stats` → `findings` →
//! `permutation` → `control` → `causal` → `summary`, `plots`, `profiles` → `report` → `run`.

pub mod causal;
pub mod control;
pub mod files;
pub mod findings;
pub mod permutation;
pub mod plots;
pub mod profiles;
pub mod report;
pub mod run;
pub mod stats;
pub mod summary;
#[cfg(test)]
pub(crate) mod synthetic;

pub use causal::{Ablation, CausalArgs, CausalTest};
pub use files::{
    ACTIVATIONS_NPY, ACTIVATIONS_SAFETENSORS, HEATMAP_PNG, NEURONS_CSV, OFFSETS_PNG, REPORT_MD,
    TOP_NEURONS_PNG,
};
pub use run::{run_challenge, CategorySpec, ChallengeArgs, ChallengeOutcome};
