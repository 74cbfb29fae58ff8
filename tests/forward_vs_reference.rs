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
    let mut hooks: Vec<Hook> = (0..4).flat_map(|l| HookPoint::ALL.map(|p| Hook::block(l, p))).collect();
    hooks.push(Hook::LnFinal);
    let plan = HookPlan::new(&hooks).unwrap();
    let cpu = reference::forward(&weights, &batch, &plan);
    let (gpu, _) = engine(&weights, variant).forward(&batch, &plan, false).unwrap();
    for &hook in &hooks {
        let err = max_abs_diff(gpu.get(hook).unwrap(), &cpu[&hook]);
        println!("{variant} {hook}: {err:.2e}");
        assert!(err < 1e-5, "{variant} {hook}: GPU differs from the reference by {err}");
    }
}
