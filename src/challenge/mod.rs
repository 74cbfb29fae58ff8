//! The grammar-tuning challenge: word lists → activations → statistics → CSV, PNG, report.

pub mod plots;
pub mod report;
pub mod stats;
