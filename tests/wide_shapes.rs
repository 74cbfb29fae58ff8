//! At GPT-Neo 1.3B's and 2.7B's widths (2 blocks, global then local with window 256, seeded
//! synthetic weights drawn as HF initializes them, a 300-token sequence longer than the window),
//! the adapter's default kernels are at least as close to the f64 reference as HF's own float32
//! forward is to its float64 forward at the same shape: the bounds are HF's errors measured by
//! `fixtures/fidelity_shapes.py` and committed in `fixtures/fidelity_shapes.json`.

mod common;

use common::{engine, gpu};
use neoprobe::kernels::Variant;
use neoprobe::model::{AttentionKind, Batch, GptNeoConfig, GptNeoWeights, Hook, HookPlan, HookPoint};
use neoprobe::reference;
use serde_json::Value;

/// Rows of the logits compared (the reference's full `[tokens, vocab]` product in f64 is slow).
const LOGIT_ROWS: [usize; 6] = [0, 1, 150, 257, 298, 299];

fn hf_error(shape: &str, hook: &str) -> f64 {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/fidelity_shapes.json").unwrap()).unwrap();
    json["shapes"][shape]["hf_fp32_vs_f64"][hook]["max_abs"].as_f64().unwrap()
}

fn at_least_as_exact_as_hf(shape: &str, hidden: usize, heads: usize) {
    let config = GptNeoConfig {
        vocab_size: 50257,
        hidden_size: hidden,
        num_layers: 2,
        num_heads: heads,
        intermediate_size: 4 * hidden,
        window_size: 256,
        max_position_embeddings: 2048,
        layer_norm_epsilon: 1e-5,
        attention_layers: vec![AttentionKind::Global, AttentionKind::Local],
    };
    let weights = GptNeoWeights::synthetic(&config, 2048 + hidden as u64);
    let ids: Vec<u32> = (0..300u32).map(|i| (i * 7919 + 13) % 50257).collect();
    let batch = Batch::pack(&[ids], config.max_position_embeddings).unwrap();
    let pre = Hook::block(1, HookPoint::MlpPre);
    let reference = reference::forward(&weights, &batch, &HookPlan::new(&[pre, Hook::LnFinal]).unwrap());
    let variant = Variant::best_for(gpu());
    let (acts, _) = engine(&weights, variant)
        .forward(&batch, &HookPlan::new(&[pre, Hook::Logits]).unwrap(), false)
        .unwrap();

    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max)
    };
    let err = max_diff(acts.get(pre).unwrap(), &reference[&pre]);
    let hf = hf_error(shape, "blocks.1.mlp.hook_pre");
    println!("{shape} {variant} blocks.1.mlp.hook_pre: {err:.2e} (HF fp32 vs f64: {hf:.2e})");
    assert!(
        err <= hf,
        "{shape} {variant}: blocks.1.mlp.hook_pre is {err:e} from the reference, HF's fp32 {hf:e}"
    );

    let h = config.hidden_size;
    let normed = &reference[&Hook::LnFinal];
    let rows: Vec<f32> = LOGIT_ROWS.iter().flat_map(|&t| &normed[t * h..(t + 1) * h]).copied().collect();
    let want = reference::linear(&rows, &weights.wte.values(), &vec![0.0; config.vocab_size], h);
    let logits = acts.get(Hook::Logits).unwrap();
    let got: Vec<f32> = LOGIT_ROWS
        .iter()
        .flat_map(|&t| &logits[t * config.vocab_size..(t + 1) * config.vocab_size])
        .copied()
        .collect();
    let err = max_diff(&got, &want);
    let hf = hf_error(shape, "logits");
    println!("{shape} {variant} logits: {err:.2e} (HF fp32 vs f64: {hf:.2e})");
    assert!(err <= hf, "{shape} {variant}: logits are {err:e} from the reference, HF's fp32 {hf:e}");
}

#[test]
fn gpt_neo_1_3b_widths_at_least_as_exact_as_hf() {
    at_least_as_exact_as_hf("1.3B", 2048, 16);
}

#[test]
fn gpt_neo_2_7b_widths_at_least_as_exact_as_hf() {
    at_least_as_exact_as_hf("2.7B", 2560, 20);
}
