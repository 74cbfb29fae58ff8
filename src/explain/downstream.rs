//! What the neuron does after GELU, for this word: its write into the residual stream, that
//! write's direct effect on the logits through `ln_f`, and the measured effect of ablating it.
//!
//! The write at token t is `post[t] · c_proj.weight[:, n]` (c_proj maps the MLP's neurons back to
//! the residual stream; column n is this neuron's direction). Its direct logit attribution at the
//! word's last token follows TransformerLens' convention (`apply_ln_to_stack` with the final
//! layer norm): the write is centred and divided by the scale `√(var + eps)` that `ln_f` divided
//! the clean residual stream by, then multiplied by ln_f's weight γ and unembedded:
//! `dla[v] = Σ_i γ_i · (d_i − mean(d)) / scale · wte[v, i]`. It is the part of the logits that
//! flows from the neuron straight to the output, not through later blocks. The ablation measures
//! every path at once: the neuron zeroed at `mlp.hook_post` on every token of the word, the rest
//! of the model run again, and KL(p_clean ‖ p_ablated) of the next-token distribution.

use crate::model::{logsumexp, GptNeoWeights, HostTensor};
use crate::tokenize::Tokenizer;
use serde::Serialize;

/// Tokens listed on each side of the attribution and of the moved probabilities.
const TOP_TOKENS: usize = 8;

/// A vocabulary token and a value.
#[derive(Clone, Debug, Serialize)]
pub struct TokenValue {
    pub id: u32,
    pub text: String,
    pub value: f64,
}

/// A token whose probability the ablation moved.
#[derive(Clone, Debug, Serialize)]
pub struct Moved {
    pub id: u32,
    pub text: String,
    pub p_clean: f64,
    pub p_ablated: f64,
}

/// The neuron downstream of GELU, at the word's last token.
#[derive(Clone, Debug, Serialize)]
pub struct Downstream {
    /// The row of the word's last token (the position whose next-token distribution is read).
    pub row: usize,
    /// `mlp.hook_post` of the neuron at that token (the GPU's value).
    pub post: f32,
    /// ‖c_proj.weight[:, n]‖ and ‖post · c_proj.weight[:, n]‖.
    pub direction_norm: f64,
    pub write_norm: f64,
    /// `√(var + eps)` of the clean residual stream entering ln_f at that token.
    pub ln_f_scale: f64,
    /// The write's direct logit attribution: the tokens it raises most and lowers most.
    pub promoted: Vec<TokenValue>,
    pub suppressed: Vec<TokenValue>,
    /// The model's most probable next token (clean run), its probability, and the write's
    /// direct attribution to its logit.
    pub prediction: TokenValue,
    pub prediction_dla: f64,
    /// The neuron zeroed at every token of the word.
    pub ablation: AblationEffect,
}

/// The measured effect of zero-ablating the neuron.
#[derive(Clone, Debug, Serialize)]
pub struct AblationEffect {
    /// The intervention, in the command line's grammar.
    pub spec: String,
    /// KL(p_clean ‖ p_ablated) in nats.
    pub kl: f64,
    /// The tokens whose probability moved most, largest change first.
    pub moved: Vec<Moved>,
}

/// What the forward passes give [`downstream`].
pub struct Runs<'a> {
    pub layer: usize,
    pub neuron: usize,
    /// The word's last token's row, its `mlp.hook_post` value and the clean residual stream
    /// entering ln_f there.
    pub row: usize,
    pub post: f32,
    pub resid_final: &'a [f32],
    /// The next-token logits after the word: clean, and with the neuron ablated.
    pub clean_logits: &'a [f32],
    pub ablated_logits: &'a [f32],
}

/// The write of `post` along c_proj's column `neuron`, in f64.
pub fn write_vector(weights: &GptNeoWeights, layer: usize, neuron: usize, post: f32) -> Vec<f64> {
    let c_proj = &weights.blocks[layer].c_proj.weight;
    let inter = weights.config.intermediate_size;
    c_proj.values().chunks_exact(inter).map(|row| post as f64 * row[neuron] as f64).collect()
}

/// The direct logit attribution of a write `d` to every vocabulary token, through ln_f with the
/// clean run's `scale` (f64; `wte` is the tied unembedding).
pub fn direct_logit_attribution(d: &[f64], scale: f64, gamma: &[f32], wte: &HostTensor) -> Vec<f64> {
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let normed: Vec<f64> = d.iter().zip(gamma).map(|(&v, &g)| g as f64 * (v - mean) / scale).collect();
    wte.values()
        .chunks_exact(d.len())
        .map(|row| row.iter().zip(&normed).map(|(&w, &x)| w as f64 * x).sum())
        .collect()
}

/// `√(var + eps)` of one row, in f64: what layer norm divides it by (the statistics of explain's
/// ln_2 step).
pub fn ln_scale(row: &[f32], eps: f64) -> f64 {
    (super::ln2_step(row, eps).variance + eps).sqrt()
}

/// Log-probabilities of a row of logits, in f64.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let lse = logsumexp(logits);
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// The neuron downstream for this word.
pub fn downstream(weights: &GptNeoWeights, tokenizer: &Tokenizer, runs: &Runs) -> Downstream {
    let config = &weights.config;
    let d = write_vector(weights, runs.layer, runs.neuron, runs.post);
    let direction_norm =
        write_vector(weights, runs.layer, runs.neuron, 1.0).iter().map(|v| v * v).sum::<f64>().sqrt();
    let scale = ln_scale(runs.resid_final, config.layer_norm_epsilon as f64);
    let ln_f = weights.ln_f.as_ref().expect("explain loads ln_f with the logits");
    let dla = direct_logit_attribution(&d, scale, &ln_f.weight.values(), &weights.wte);
    let token =
        |id: usize, value: f64| TokenValue { id: id as u32, text: tokenizer.token_text(id as u32), value };
    let mut order: Vec<usize> = (0..dla.len()).collect();
    order.sort_by(|&a, &b| dla[b].total_cmp(&dla[a]).then(a.cmp(&b)));
    let promoted = order.iter().take(TOP_TOKENS).map(|&v| token(v, dla[v])).collect();
    let suppressed = order.iter().rev().take(TOP_TOKENS).map(|&v| token(v, dla[v])).collect();

    let (log_p, log_q) = (log_softmax(runs.clean_logits), log_softmax(runs.ablated_logits));
    let kl = log_p.iter().zip(&log_q).map(|(&a, &b)| a.exp() * (a - b)).sum();
    let (p, q): (Vec<f64>, Vec<f64>) =
        (log_p.iter().map(|v| v.exp()).collect(), log_q.iter().map(|v| v.exp()).collect());
    let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a))).unwrap_or(0);
    let mut moved: Vec<usize> = (0..p.len()).collect();
    moved.sort_by(|&a, &b| (p[b] - q[b]).abs().total_cmp(&(p[a] - q[a]).abs()).then(a.cmp(&b)));
    let moved = moved
        .into_iter()
        .take(TOP_TOKENS)
        .map(|v| Moved { id: v as u32, text: tokenizer.token_text(v as u32), p_clean: p[v], p_ablated: q[v] })
        .collect();
    Downstream {
        row: runs.row,
        post: runs.post,
        direction_norm,
        write_norm: d.iter().map(|v| v * v).sum::<f64>().sqrt(),
        ln_f_scale: scale,
        promoted,
        suppressed,
        prediction: token(best, p[best]),
        prediction_dla: dla[best],
        ablation: AblationEffect {
            spec: format!("--ablate blocks.{}.mlp.hook_post:{}", runs.layer, runs.neuron),
            kl,
            moved,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribution_centres_scales_and_unembeds() {
        // Two tokens, hidden 3: wte rows [1, 0, 0] and [0, 1, -1].
        let wte = HostTensor::from_vec(vec![2, 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, -1.0]);
        let d = [3.0, 0.0, 0.0]; // mean 1: centred [2, -1, -1]
        let dla = direct_logit_attribution(&d, 2.0, &[1.0, 2.0, 0.5], &wte);
        // γ ⊙ centred / 2 = [1, -1, -0.25].
        assert_eq!(dla, vec![1.0, -0.75]);
        assert!((ln_scale(&[1.0, 3.0], 0.0) - 1.0).abs() < 1e-15);
        let p: Vec<f64> = log_softmax(&[0.0, 0.0, (2.0f32).ln()]).iter().map(|v| v.exp()).collect();
        assert!((p[2] - 0.5).abs() < 1e-7 && (p[0] - 0.25).abs() < 1e-7, "{p:?}");
    }
}
