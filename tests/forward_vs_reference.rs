//! The GPU forward against the CPU reference at every hook point, on a small synthetic model.

mod common;

use common::{config, engine, max_abs_diff};
use neoprobe::kernels::Variant;
use neoprobe::model::{Batch, GptNeoWeights, Hook, HookPlan, HookPoint};
use neoprobe::reference;

crate::test_each_variant!(every_hook_point_matches_the_reference_on_packed_sequences);

fn every_hook_point_matches_the_reference_on_packed_sequences(variant: Variant) {
    let config = config(64, 4, 4, 8, 500, 64);
    let weights = GptNeoWeights::synthetic(&config, 7);
    // Sequences longer and shorter than the window, packed together.
    let sequences: Vec<Vec<u32>> =
        vec![(0..30).map(|i| (i * 37 % 500) as u32).collect(), vec![4], (0..9).collect()];
    let batch = Batch::pack(&sequences, config.max_position_embeddings).unwrap();
    let hooks = Hook::all(&config);
    let plan = HookPlan::new(&hooks).unwrap();
    let cpu = reference::forward(&weights, &batch, &plan);
    let (gpu, _) = engine(&weights, variant).forward(&batch, &plan, false).unwrap();
    for &hook in &hooks {
        let err = max_abs_diff(gpu.get(hook).unwrap(), &cpu[&hook]);
        println!("{variant} {hook}: {err:.2e}");
        assert!(err < 1e-5, "{variant} {hook}: GPU differs from the reference by {err}");
    }
    // The embeddings are the tables' rows, exactly.
    assert_eq!(gpu.get(Hook::Embed).unwrap(), &cpu[&Hook::Embed][..]);
    assert_eq!(gpu.get(Hook::PosEmbed).unwrap(), &cpu[&Hook::PosEmbed][..]);
    assert_eq!(gpu.shape(Hook::Logits).unwrap(), [batch.n_tokens(), 500]);

    // The pattern is the attention the GPU computed: its weights times v give the GPU's z, and
    // each query's weights sum to 1 over the keys it sees and are 0 elsewhere.
    let (n_heads, head_dim, h) = (config.num_heads, config.head_dim(), config.hidden_size);
    for layer in 0..config.num_layers {
        let at = |point| Hook::block(layer, point);
        let pattern = gpu.get(at(HookPoint::AttnPattern)).unwrap();
        let longest = 30;
        assert_eq!(gpu.shape(at(HookPoint::AttnPattern)).unwrap(), [3, n_heads, longest, longest]);
        let (v, z) = (gpu.get(at(HookPoint::AttnV)).unwrap(), gpu.get(at(HookPoint::AttnZ)).unwrap());
        for s in 0..batch.n_sequences() {
            let tokens = batch.sequence(s);
            for (i, t) in tokens.clone().enumerate() {
                let first = config.window(layer).map_or(0, |w| (i + 1).saturating_sub(w));
                for head in 0..n_heads {
                    let row = &pattern[((s * n_heads + head) * longest + i) * longest..][..longest];
                    let seen: f32 = row[first..=i].iter().sum();
                    assert!(
                        (seen - 1.0).abs() < 1e-5,
                        "layer {layer} seq {s} query {i}: weights sum to {seen}"
                    );
                    assert!(row.iter().enumerate().all(|(j, &p)| (first..=i).contains(&j) || p == 0.0));
                    for e in 0..head_dim {
                        let c = head * head_dim + e;
                        let weighted: f64 =
                            (first..=i).map(|j| row[j] as f64 * v[(tokens.start + j) * h + c] as f64).sum();
                        let got = z[t * h + c] as f64;
                        assert!(
                            (weighted - got).abs() < 1e-5,
                            "layer {layer} token {t} column {c}: Σ p·v {weighted} vs z {got}"
                        );
                    }
                }
            }
        }
    }
}
