//! The GPT-Neo forward in plain Rust, op by op as the kernels compute it but accumulating in f64:
//! the truth the GPU kernels are tested against. Each op takes and returns f32 row-major arrays,
//! so a kernel's output can be compared with the same op here on the same inputs.

pub use crate::model::attention_pattern;
use crate::model::{Batch, GptNeoWeights, Hook, HookPlan, HookPoint};
use std::collections::HashMap;
use std::ops::ControlFlow;

/// `hidden[t] = token_rows[t] + wpe[position[t]]`.
pub fn embed(token_rows: &[f32], wpe: &[f32], positions: &[u32], width: usize) -> Vec<f32> {
    token_rows
        .chunks_exact(width)
        .zip(positions)
        .flat_map(|(row, &p)| row.iter().zip(&wpe[p as usize * width..]).map(|(a, b)| a + b))
        .collect()
}

/// LayerNorm of each row: biased variance about the mean, as torch.nn.LayerNorm.
pub fn layernorm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let width = gamma.len();
    x.chunks_exact(width)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / width as f64;
            let inv_std = 1.0 / (var + eps as f64).sqrt();
            row.iter()
                .zip(gamma.iter().zip(beta))
                .map(move |(&v, (&g, &b))| ((v as f64 - mean) * inv_std * g as f64 + b as f64) as f32)
        })
        .collect()
}

/// `y = x · wᵀ + bias`, `w` in HF's `[out, in]` layout. Rows are split across the machine's cores.
pub fn linear(x: &[f32], w: &[f32], bias: &[f32], n_in: usize) -> Vec<f32> {
    let n_out = bias.len();
    let n_tokens = x.len() / n_in;
    let mut y = vec![0.0f32; n_tokens * n_out];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(n_tokens.max(1));
    let rows_per_thread = n_tokens.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (chunk, y_chunk) in y.chunks_mut(rows_per_thread * n_out).enumerate() {
            let x_chunk = &x[chunk * rows_per_thread * n_in..];
            scope.spawn(move || {
                for (t, y_row) in y_chunk.chunks_exact_mut(n_out).enumerate() {
                    let x_row: Vec<f64> =
                        x_chunk[t * n_in..(t + 1) * n_in].iter().map(|&v| v as f64).collect();
                    for (n, out) in y_row.iter_mut().enumerate() {
                        *out = (dot_f64(&x_row, &w[n * n_in..(n + 1) * n_in]) + bias[n] as f64) as f32;
                    }
                }
            });
        }
    });
    y
}

fn dot_f64(a: &[f64], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4.remainder().iter().zip(b4.remainder()).map(|(&x, &y)| x * y as f64).sum();
    for (x, y) in a4.zip(b4) {
        for i in 0..4 {
            acc[i] += x[i] * y[i] as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// GPT-Neo attention over packed sequences: `qkv` rows hold q, k, v side by side
/// (`[tokens, 3·width]`), scores are unscaled, query t sees keys `first..=t` of its own
/// sequence, `first = max(seq_start[t], t + 1 − window)` on local layers. Returns z `[tokens, width]`.
pub fn attention(
    qkv: &[f32],
    seq_start: &[u32],
    n_heads: usize,
    head_dim: usize,
    window: Option<usize>,
) -> Vec<f32> {
    let width = n_heads * head_dim;
    let n_tokens = seq_start.len();
    let row = |t: usize| &qkv[t * 3 * width..(t + 1) * 3 * width];
    let mut z = vec![0.0f32; n_tokens * width];
    for t in 0..n_tokens {
        let mut first = seq_start[t] as usize;
        if let Some(window) = window {
            first = first.max((t + 1).saturating_sub(window));
        }
        for h in 0..n_heads {
            let q = &row(t)[h * head_dim..(h + 1) * head_dim];
            let scores: Vec<f64> = (first..=t)
                .map(|j| {
                    let k = &row(j)[width + h * head_dim..width + (h + 1) * head_dim];
                    q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for e in 0..head_dim {
                let value: f64 = (first..=t)
                    .zip(&weights)
                    .map(|(j, p)| p * row(j)[2 * width + h * head_dim + e] as f64)
                    .sum();
                z[t * width + h * head_dim + e] = (value / total) as f32;
            }
        }
    }
    z
}

/// gelu_new(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in f64.
pub fn gelu_new(x: &[f32]) -> Vec<f32> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    x.iter()
        .map(|&v| {
            let v = v as f64;
            (0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())) as f32
        })
        .collect()
}

/// Elementwise `a + b`.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// The whole forward up to the deepest hook of `plan`; returns every requested hook `[tokens, width]`.
pub fn forward(weights: &GptNeoWeights, batch: &Batch, plan: &HookPlan) -> HashMap<Hook, Vec<f32>> {
    let mut out = HashMap::new();
    let _ = run(weights, batch, plan, &mut out);
    out
}

fn run(
    weights: &GptNeoWeights,
    batch: &Batch,
    plan: &HookPlan,
    out: &mut HashMap<Hook, Vec<f32>>,
) -> ControlFlow<()> {
    let config = &weights.config;
    let h = config.hidden_size;
    let mut tap = |hook: Hook, values: &mut Vec<f32>| {
        for intervention in plan.interventions().iter().filter(|i| i.hook == hook) {
            let width = hook.width(config);
            intervention.apply(values, width, 0, width, batch);
        }
        if plan.wants(hook) {
            out.insert(hook, values.to_vec());
        }
        if hook == plan.deepest() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let mut token_rows: Vec<f32> = batch
        .ids
        .iter()
        .flat_map(|&id| bytemuck::pod_collect_to_vec::<u8, f32>(weights.wte.row_bytes(id as usize)))
        .collect();
    tap(Hook::Embed, &mut token_rows)?;
    let wpe = weights.wpe.to_vec();
    let mut pos_rows: Vec<f32> =
        batch.positions.iter().flat_map(|&p| wpe[p as usize * h..(p as usize + 1) * h].to_vec()).collect();
    tap(Hook::PosEmbed, &mut pos_rows)?;
    let mut resid = add(&token_rows, &pos_rows);
    for (layer, block) in weights.blocks.iter().enumerate() {
        let hook = |point| Hook::block(layer, point);
        tap(hook(HookPoint::ResidPre), &mut resid)?;
        let mut ln_1 = layernorm(
            &resid,
            &block.ln_1.weight.to_vec(),
            &block.ln_1.bias.to_vec(),
            config.layer_norm_epsilon,
        );
        tap(hook(HookPoint::Ln1Normalized), &mut ln_1)?;
        let zero_bias = vec![0.0; h];
        let mut q = linear(&ln_1, &block.q_proj.to_vec(), &zero_bias, h);
        let mut k = linear(&ln_1, &block.k_proj.to_vec(), &zero_bias, h);
        let mut v = linear(&ln_1, &block.v_proj.to_vec(), &zero_bias, h);
        tap(hook(HookPoint::AttnQ), &mut q)?;
        tap(hook(HookPoint::AttnK), &mut k)?;
        tap(hook(HookPoint::AttnV), &mut v)?;
        let qkv: Vec<f32> = (0..batch.n_tokens())
            .flat_map(|t| [&q, &k, &v].map(|m| &m[t * h..(t + 1) * h]).concat())
            .collect();
        if plan.wants(hook(HookPoint::AttnPattern)) {
            let (_, mut p) =
                attention_pattern(&qkv, batch, config.num_heads, config.head_dim(), config.window(layer));
            tap(hook(HookPoint::AttnPattern), &mut p)?;
        }
        let mut z =
            attention(&qkv, &batch.seq_start, config.num_heads, config.head_dim(), config.window(layer));
        tap(hook(HookPoint::AttnZ), &mut z)?;
        let mut attn_out = linear(&z, &block.out_proj.weight.to_vec(), &block.out_proj.bias.to_vec(), h);
        tap(hook(HookPoint::AttnOut), &mut attn_out)?;
        let mut resid_mid = add(&resid, &attn_out);
        tap(hook(HookPoint::ResidMid), &mut resid_mid)?;
        let mut ln_2 = layernorm(
            &resid_mid,
            &block.ln_2.weight.to_vec(),
            &block.ln_2.bias.to_vec(),
            config.layer_norm_epsilon,
        );
        tap(hook(HookPoint::Ln2Normalized), &mut ln_2)?;
        let mut mlp_pre = linear(&ln_2, &block.c_fc.weight.to_vec(), &block.c_fc.bias.to_vec(), h);
        tap(hook(HookPoint::MlpPre), &mut mlp_pre)?;
        let mut mlp_post = gelu_new(&mlp_pre);
        tap(hook(HookPoint::MlpPost), &mut mlp_post)?;
        let mut mlp_out = linear(
            &mlp_post,
            &block.c_proj.weight.to_vec(),
            &block.c_proj.bias.to_vec(),
            config.intermediate_size,
        );
        tap(hook(HookPoint::MlpOut), &mut mlp_out)?;
        resid = add(&resid_mid, &mlp_out);
        tap(hook(HookPoint::ResidPost), &mut resid)?;
    }
    if let Some(ln_f) = &weights.ln_f {
        let mut normed =
            layernorm(&resid, &ln_f.weight.to_vec(), &ln_f.bias.to_vec(), config.layer_norm_epsilon);
        tap(Hook::LnFinal, &mut normed)?;
        if plan.wants(Hook::Logits) {
            let mut logits = linear(&normed, &weights.wte.to_vec(), &vec![0.0; config.vocab_size], h);
            tap(Hook::Logits, &mut logits)?;
        }
    }
    ControlFlow::Continue(())
}
