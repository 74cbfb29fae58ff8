//! The names of the files the challenge writes into its output folder (the report links to
//! them).

pub const ACTIVATIONS_NPY: &str = "activations.npy";
pub const ACTIVATIONS_SAFETENSORS: &str = "activations.safetensors";
pub const NEURONS_CSV: &str = "neurons.csv";
pub const HEATMAP_PNG: &str = "heatmap.png";
pub const TOP_NEURONS_PNG: &str = "top_neurons.png";
pub const OFFSETS_PNG: &str = "offsets.png";
pub const CAUSAL_PNG: &str = "causal.png";
pub const REPORT_MD: &str = "report.md";

/// Every file the challenge writes, in the order it writes them (`causal.png` only when the
/// causal test runs).
pub const OUTPUT_FILES: [&str; 8] = [
    ACTIVATIONS_NPY,
    ACTIVATIONS_SAFETENSORS,
    NEURONS_CSV,
    HEATMAP_PNG,
    TOP_NEURONS_PNG,
    OFFSETS_PNG,
    CAUSAL_PNG,
    REPORT_MD,
];
