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

pub use crate::engine::{ModelSource, ResolvedModel};
pub use run::{run_challenge, CategorySpec, ChallengeArgs, ChallengeOutcome, WordSource};

/// File names of the challenge outputs inside the output folder (the report links to them).
pub const ACTIVATIONS_NPY: &str = "activations.npy";
pub const ACTIVATIONS_SAFETENSORS: &str = "activations.safetensors";
pub const NEURONS_CSV: &str = "neurons.csv";
pub const HEATMAP_PNG: &str = "heatmap.png";
pub const TOP_NEURONS_PNG: &str = "top_neurons.png";
pub const OFFSETS_PNG: &str = "offsets.png";
pub const REPORT_MD: &str = "report.md";

/// `x` rounded to `digits` significant digits, in plain notation for magnitudes from 1e-4 to
/// below 1e6 and in scientific notation (`3.24e-32`) otherwise; `0`, `inf`, `-inf`, `NaN` as such.
/// Used for every number a person reads (report, terminal, figure labels), so that output does
/// not change with last-digit differences between GPU adapters.
pub fn sig(x: f64, digits: usize) -> String {
    let digits = digits.max(1);
    if x == 0.0 {
        return "0".to_string();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    // Round first, then decide the notation from the rounded value (0.9996 → 1.00, not 0.9996).
    let rounded: f64 = format!("{:.*e}", digits - 1, x).parse().expect("formatted float parses");
    let exponent = rounded.abs().log10().floor() as i32;
    if (-4..6).contains(&exponent) {
        let decimals = (digits as i32 - 1 - exponent).max(0) as usize;
        format!("{rounded:.decimals$}")
    } else {
        format!("{:.*e}", digits - 1, rounded)
    }
}

#[cfg(test)]
mod tests {
    use super::sig;

    #[test]
    fn sig_rounds_to_significant_digits() {
        assert_eq!(sig(0.0, 3), "0");
        assert_eq!(sig(-0.0, 3), "0");
        assert_eq!(sig(1234.567, 3), "1230");
        assert_eq!(sig(12.345, 3), "12.3");
        assert_eq!(sig(-0.012345, 3), "-0.0123");
        assert_eq!(sig(0.9996, 3), "1.00");
        assert_eq!(sig(3.242321e-32, 3), "3.24e-32");
        assert_eq!(sig(2.5e7, 3), "2.50e7");
        assert_eq!(sig(f64::INFINITY, 3), "inf");
        assert_eq!(sig(f64::NEG_INFINITY, 3), "-inf");
        assert_eq!(sig(0.5, 1), "0.5");
    }
}
