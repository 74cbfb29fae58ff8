//! The explanation in words: a terminal summary and `explain.md`.

use super::downstream::{Downstream, Moved, TokenValue};
use super::{Explanation, TokenExplanation, CONTRIBUTIONS_PNG, TILES_PNG};
use crate::text::sig;
use std::fmt::Write as _;

/// Digits shown of values whose last bits matter (the dot product and its replays).
const EXACT: usize = 9;
/// Digits shown of everything else.
const SHOWN: usize = 4;

fn s(x: f64) -> String {
    sig(x, SHOWN)
}

fn exact(x: f32) -> String {
    format!("{} (bits {:08x})", sig(x as f64, EXACT), x.to_bits())
}

fn tokens_line(e: &Explanation) -> String {
    let list: Vec<String> = e.tokens.iter().map(|t| format!("[{}] {} {:?}", t.row, t.id, t.text)).collect();
    let values: Vec<String> = e.tokens.iter().map(|t| s(t.pre_gpu as f64)).collect();
    format!(
        "{} token{}: {}; the challenge's value is the mean over them: {} (of {})",
        e.tokens.len(),
        if e.tokens.len() == 1 { "" } else { "s" },
        list.join(" · "),
        s(e.mean_pre as f64),
        values.join(", ")
    )
}

fn replay_words(t: &TokenExplanation) -> &'static str {
    match t.replay_matches.as_str() {
        "both" => "both replays give the GPU's bits (no product was rounded differently by fusing)",
        "unfused" => {
            "the unfused replay gives the GPU's bits: this adapter rounds each product, then each sum"
        }
        "fused" => {
            "the fused replay gives the GPU's bits: this adapter contracts each multiply-add to one FMA"
        }
        _ => "neither replay gives the GPU's bits: the driver reorders or contracts some of the operations",
    }
}

/// ` the` +0.0123 (signed values).
fn token_values(list: &[TokenValue], n: usize) -> String {
    let shown: Vec<String> =
        list.iter().take(n).map(|t| format!("{:?} {:+}", t.text, Signed(t.value))).collect();
    shown.join(", ")
}

/// A value with its sign always shown, at the usual digits.
struct Signed(f64);

impl std::fmt::Display for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let text = s(self.0);
        if self.0 >= 0.0 {
            write!(f, "+{text}")
        } else {
            f.write_str(&text)
        }
    }
}

/// ` of` 0.0512 → 0.0500.
fn moved(list: &[Moved], n: usize) -> String {
    let shown: Vec<String> =
        list.iter().take(n).map(|m| format!("{:?} {} → {}", m.text, s(m.p_clean), s(m.p_ablated))).collect();
    shown.join(", ")
}

fn write_words(e: &Explanation, d: &Downstream) -> String {
    format!(
        "mlp.hook_post {} × c_proj.weight[:, {}] (norm {}) adds a vector of norm {} to the residual stream",
        s(d.post as f64),
        e.neuron,
        s(d.direction_norm),
        s(d.write_norm)
    )
}

fn max_abs(values: &[f32]) -> f64 {
    values.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()))
}

/// The terminal summary.
pub fn terminal(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "neuron {} of block {}'s MLP expansion (c_fc → blocks.{}.mlp.hook_pre) for {:?}{}",
        e.neuron,
        e.layer,
        e.layer,
        e.word,
        if e.prefix_space { " (with a leading space)" } else { "" }
    );
    let _ = writeln!(out, "model {} · {} kernels · {}", e.model, e.variant, e.adapter);
    let _ = writeln!(out, "{}", tokens_line(e));
    for t in &e.tokens {
        let d = &t.dispatch;
        let _ = writeln!(out, "\ntoken {} ({} {:?}):", t.row, t.id, t.text);
        let _ = writeln!(
            out,
            "  ln_2   resid_mid mean {}, variance {}, 1/√(variance + {}) = {} → x: {} values, max |x| {}",
            s(t.ln2.mean),
            s(t.ln2.variance),
            s(t.ln2.eps),
            s(t.ln2.inv_std),
            t.x.len(),
            s(max_abs(&t.x))
        );
        let _ = writeln!(
            out,
            "  weights c_fc.weight[{}, :]: {} values, max |w| {}; bias {}",
            e.neuron,
            t.w.len(),
            s(max_abs(&t.w)),
            s(t.bias as f64)
        );
        let _ = writeln!(out, "  x · w  Σ of {} products = {} (f64)", t.products.len(), s(t.dot_f64));
        for (name, list) in [("largest +", &t.top_positive), ("largest −", &t.top_negative)] {
            let terms: Vec<String> = list
                .iter()
                .take(4)
                .map(|c| format!("k {}: {} × {} = {}", c.k, s(c.x as f64), s(c.w as f64), s(c.product)))
                .collect();
            let _ = writeln!(out, "         {name}  {}", terms.join(" · "));
        }
        let _ = writeln!(
            out,
            "  kernel {} over a grid of {:?} workgroups of {} invocations; output (token {}, neuron {}) \
             belongs to workgroup ({}, {}), stored by invocation {}{}",
            d.kernel,
            d.grid,
            d.workgroup_size,
            t.row,
            e.neuron,
            d.workgroup[0],
            d.workgroup[1],
            d.invocation,
            if d.partial_sums.len() > 1 {
                format!(" from the partial sums of invocations {:?}", d.partial_sums)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "         the kernel itself recorded workgroup ({}, {}), invocation {}",
            d.recorded_workgroup[0], d.recorded_workgroup[1], d.recorded_invocation
        );
        let _ = writeln!(out, "  reads  {}", d.reads);
        let _ = writeln!(out, "  order  {}", d.k_order);
        let _ = writeln!(
            out,
            "  pre    GPU {} · replayed {} · fused {} · exact {}",
            exact(t.pre_gpu),
            exact(t.pre_replayed),
            exact(t.pre_replayed_fused),
            sig(t.dot_f64 + t.bias as f64, EXACT)
        );
        let _ = writeln!(out, "         {}", replay_words(t));
        let _ = writeln!(
            out,
            "  gelu   inner √(2/π)·(v + 0.044715·v³) = {}, tanh = {}, 0.5·v·(1 + tanh) = {}; GPU mlp.hook_post {}",
            s(t.gelu.inner),
            s(t.gelu.tanh),
            s(t.gelu.value),
            s(t.post_gpu as f64)
        );
    }
    let d = &e.downstream;
    let _ = writeln!(
        out,
        "\ndownstream, at the word's last token ({}), whose next-token distribution it shapes:",
        d.row
    );
    let _ = writeln!(out, "  write   {}", write_words(e, d));
    let _ = writeln!(
        out,
        "  direct  through ln_f (the clean run's scale {}): promotes {}; suppresses {}",
        s(d.ln_f_scale),
        token_values(&d.promoted, 4),
        token_values(&d.suppressed, 4)
    );
    let _ = writeln!(
        out,
        "  predict the model's top next token is {:?} (p {}); this write's direct effect on its logit {}",
        d.prediction.text,
        s(d.prediction.value),
        Signed(d.prediction_dla)
    );
    let _ = writeln!(
        out,
        "  ablate  {}: KL(p_clean ‖ p_ablated) = {} nats; moved most: {}",
        d.ablation.spec,
        s(d.ablation.kl),
        moved(&d.ablation.moved, 4)
    );
    out
}

/// `explain.md`.
pub fn markdown(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Neuron {} of block {}'s MLP expansion for {:?}\n", e.neuron, e.layer, e.word);
    let _ = writeln!(
        out,
        "Model `{}`, kernel variant `{}`, adapter {}. The word runs alone{}, as in the challenge; \
         `blocks.{}.mlp.hook_pre` is c_fc's output after the matmul and bias, before GELU: \
         `pre = x · c_fc.weight[{}, :] + c_fc.bias[{}]` with x the token's ln_2 output.\n",
        e.model,
        e.variant,
        e.adapter,
        if e.prefix_space { " with a leading space" } else { "" },
        e.layer,
        e.neuron,
        e.neuron
    );
    let _ = writeln!(out, "{}.\n", tokens_line(e));
    let _ = writeln!(
        out,
        "![The products x·w of each token, sorted, and the running sum in the kernel's order]({CONTRIBUTIONS_PNG})\n"
    );
    let _ = writeln!(
        out,
        "![c_fc's output as the kernel's tiles, the owning workgroup highlighted]({TILES_PNG})\n"
    );
    for t in &e.tokens {
        let d = &t.dispatch;
        let _ = writeln!(out, "## Token {}: {} {:?}\n", t.row, t.id, t.text);
        let _ = writeln!(out, "**ln_2.** The residual stream entering it (`resid_mid`) has mean {}, variance {}; 1/√(variance + {}) = {}. \
            x = (resid_mid − mean) · 1/√(variance + eps) · γ + β has {} values, the largest |x| {}.\n",
            s(t.ln2.mean), s(t.ln2.variance), s(t.ln2.eps), s(t.ln2.inv_std), t.x.len(), s(max_abs(&t.x)));
        let _ = writeln!(
            out,
            "**The weights.** Row {} of c_fc.weight ({} values, largest |w| {}), bias {}.\n",
            e.neuron,
            t.w.len(),
            s(max_abs(&t.w)),
            s(t.bias as f64)
        );
        let _ = writeln!(out, "**The dot product.** Σ x·w = {} (in f64). The largest terms:\n", s(t.dot_f64));
        let _ = writeln!(out, "| k | x[k] | w[k] | x·w |\n|---:|---:|---:|---:|");
        for c in t.top_positive.iter().chain(&t.top_negative) {
            let _ = writeln!(out, "| {} | {} | {} | {} |", c.k, s(c.x as f64), s(c.w as f64), s(c.product));
        }
        let _ = writeln!(out, "\nThe running sum in the kernel's order (f32, before the bias):\n");
        let _ = writeln!(out, "| after | sum |\n|---|---:|");
        for p in &t.running_sum {
            let _ = writeln!(out, "| {} | {} |", p.after, sig(p.sum as f64, EXACT));
        }
        let _ = writeln!(out, "\n**The kernel.** `shaders/{}` runs over a grid of {:?} workgroups of {} invocations. \
            Output (token {}, neuron {}) belongs to workgroup ({}, {}), whose tile is {} tokens × {} outputs; \
            invocation {} adds the bias, applies the epilogue and stores it{}. \
            Run with RECORD_OWNER, the kernel itself recorded workgroup ({}, {}), invocation {}.\n",
            d.kernel, d.grid, d.workgroup_size, t.row, e.neuron, d.workgroup[0], d.workgroup[1], d.tile[0], d.tile[1],
            d.invocation,
            if d.partial_sums.len() > 1 { format!(", after adding the partial sums of invocations {:?}", d.partial_sums) } else { String::new() },
            d.recorded_workgroup[0], d.recorded_workgroup[1], d.recorded_invocation);
        let _ = writeln!(out, "It reads {}.\n\nIts order of summation: {}.\n", d.reads, d.k_order);
        let _ = writeln!(out, "| | value |\n|---|---|");
        let _ = writeln!(out, "| GPU (`mlp.hook_pre`) | {} |", exact(t.pre_gpu));
        let _ = writeln!(out, "| the kernel's order replayed in f32 | {} |", exact(t.pre_replayed));
        let _ = writeln!(out, "| the same with fused multiply-adds | {} |", exact(t.pre_replayed_fused));
        let _ = writeln!(out, "| exact (Σ in f64 + bias) | {} |\n", sig(t.dot_f64 + t.bias as f64, EXACT));
        let _ = writeln!(
            out,
            "{}. The exact value differs from both in the last bits: every f32 addition rounds.\n",
            replay_words(t)
        );
        let _ = writeln!(
            out,
            "**gelu_new.** inner = √(2/π)·(v + 0.044715·v³) = {}; tanh(inner) = {}; 0.5·v·(1 + tanh) = {} \
            (f64, from the GPU's v); the kernel's epilogue stored {} in `mlp.hook_post`.\n",
            s(t.gelu.inner),
            s(t.gelu.tanh),
            s(t.gelu.value),
            s(t.post_gpu as f64)
        );
    }
    downstream_markdown(&mut out, e);
    out
}

/// The section of `explain.md` after GELU.
fn downstream_markdown(out: &mut String, e: &Explanation) {
    let d = &e.downstream;
    let _ = writeln!(
        out,
        "## Downstream: what the neuron writes, and what it changes
"
    );
    let _ = writeln!(
        out,
        "At the word's last token ({}), whose next-token distribution the word ends on: {}.
",
        d.row,
        write_words(e, d)
    );
    let _ = writeln!(
        out,
        "**Direct logit attribution.** The write, centred, divided by the scale ln_f divided the clean \
         residual stream by ({}), times ln_f's weight and unembedded (TransformerLens' convention): the \
         part of each logit that flows from the neuron straight to the output, not through later blocks.\n",
        s(d.ln_f_scale)
    );
    let _ = writeln!(out, "| promoted | logit | suppressed | logit |\n|---|---:|---|---:|");
    for (p, q) in d.promoted.iter().zip(&d.suppressed) {
        let _ = writeln!(out, "| {:?} | {} | {:?} | {} |", p.text, Signed(p.value), q.text, Signed(q.value));
    }
    let _ = writeln!(
        out,
        "\nThe model's most probable next token is {:?} (p {}); the write's direct effect on its logit is {}.\n",
        d.prediction.text,
        s(d.prediction.value),
        Signed(d.prediction_dla)
    );
    let _ = writeln!(
        out,
        "**Ablation.** `{}` (zero on every token of the word; the model run again from block {}): \
         KL(p_clean ‖ p_ablated) = {} nats. The tokens whose probability moved most:\n",
        d.ablation.spec,
        e.layer,
        s(d.ablation.kl)
    );
    let _ = writeln!(out, "| token | p clean | p ablated |\n|---|---:|---:|");
    for m in &d.ablation.moved {
        let _ = writeln!(out, "| {:?} | {} | {} |", m.text, s(m.p_clean), s(m.p_ablated));
    }
}
