//! How far a kernel may be from the f64 reference: each bound is a number of "error scale"
//! units, the scale computed from the inputs of each output as the f32 rounding of that
//! computation can grow. The bounds sit a small factor above the largest ratio measured over
//! thousands of random cases on lavapipe and an NVIDIA H200; docs/fidelity.md gives the
//! derivations, the measurements and the bugs each bound still catches. `tests/kernels.rs` and
//! `neoprobe verify` both use them.

/// f32 machine epsilon (2⁻²³), the unit of every error scale.
pub const EPS: f64 = f32::EPSILON as f64;

/// Linear: |GPU − reference| ≤ LINEAR_BOUND · `linear_scale`.
pub const LINEAR_BOUND: f64 = 8.0;
/// Attention: |GPU − reference| ≤ ATTENTION_BOUND · `attention_scale`.
pub const ATTENTION_BOUND: f64 = 1.5;
/// LayerNorm: |GPU − reference| ≤ LAYERNORM_BOUND · `layernorm_scale`.
pub const LAYERNORM_BOUND: f64 = 8.0;
/// gelu_new: |GPU − reference| ≤ GELU_BOUND · `gelu_scale`.
pub const GELU_BOUND: f64 = 5.0;

/// ε · (Σ_k |x_k·w_k| + |b|): the sum of the magnitudes bounds every partial sum of the dot
/// product, so each rounding is at most ε/2 of it.
pub fn linear_scale(x_row: &[f32], w_row: &[f32], bias: f32) -> f64 {
    let sum: f64 = x_row.iter().zip(w_row).map(|(&a, &c)| (a as f64 * c as f64).abs()).sum();
    EPS * (sum + (bias as f64).abs()).max(f64::MIN_POSITIVE)
}

/// ε · max|v| · (1 + S + √n_keys) for one query and head, where S = max_j Σ_e |q_e·k_je| over the
/// keys j it sees and max|v| is over their values: a score error δ moves z by about δ·max|v|, and
/// the weighted sum of n_keys values adds about √n_keys rounding steps.
pub fn attention_scale(q: &[f32], keys: &[&[f32]], values: &[&[f32]]) -> f64 {
    let s = keys
        .iter()
        .map(|k| q.iter().zip(k.iter()).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let v = values.iter().flat_map(|v| v.iter()).fold(0.0f64, |m, &x| m.max((x as f64).abs()));
    EPS * v.max(f64::MIN_POSITIVE) * (1.0 + s + (keys.len() as f64).sqrt())
}

/// ε · (|γ_c| · max|x| / √(var + eps) + |β_c|) for column c of a row: the f32 mean is off by a few
/// ε·max|x|, and that shift divided by the standard deviation dominates the error.
pub fn layernorm_scale(row: &[f32], gamma: f32, beta: f32, eps: f32) -> f64 {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let max = row.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    EPS * ((gamma as f64).abs() * max / (var + eps as f64).sqrt() + (beta as f64).abs())
        .max(f64::MIN_POSITIVE)
}

/// ε · |x| + 2⁻¹²⁶: a few ε in tanh or its argument move ½·x·(1 + tanh) by a few ε·|x|; the
/// smallest normal f32 allows a driver that flushes subnormal results to zero.
pub fn gelu_scale(x: f32) -> f64 {
    EPS * (x as f64).abs() + 2f64.powi(-126)
}
