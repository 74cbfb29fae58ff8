//! The forward at GPT-Neo-125M's full shape (768 wide, 12 heads, 3072 MLP, window 256) with
//! seeded synthetic weights: GPU against the CPU reference on a sequence longer than the window,
//! so block 7's local attention and block 8's global attention both differ from each other.

mod common;

use common::{config, engine, max_abs_diff};
use neoprobe::kernels::Variant;
use neoprobe::model::{Batch, GptNeoWeights, Hook, HookPlan, HookPoint};
use neoprobe::reference;

/// Tolerance of the acceptance check: block 8 `mlp.hook_pre`, GPU vs reference.
const TOLERANCE: f32 = 3e-5;

crate::test_each_variant!(block_8_hook_pre_matches_the_reference_at_full_shape);

fn block_8_hook_pre_matches_the_reference_at_full_shape(variant: Variant) {
    let config = config(768, 12, 12, 256, 50257, 2048);
    let weights = GptNeoWeights::synthetic(&config, 125);
    let long: Vec<u32> = (0..300u32).map(|i| (i * 7919 + 13) % 50257).collect();
    let batch = Batch::pack(&[long, vec![9703], vec![15496, 995]], config.max_position_embeddings).unwrap();
    let hooks = [Hook::block(7, HookPoint::AttnZ), Hook::block(8, HookPoint::MlpPre)];
    let plan = HookPlan::new(&hooks).unwrap();
    let started = std::time::Instant::now();
    let cpu = reference::forward(&weights, &batch, &plan);
    println!("reference: {:.1} s", started.elapsed().as_secs_f64());
    let started = std::time::Instant::now();
    let (gpu, _) = engine(&weights, variant).forward(&batch, &plan, false).unwrap();
    println!("{variant}: {:.1} s", started.elapsed().as_secs_f64());
    for hook in hooks {
        let err = max_abs_diff(gpu.get(hook).unwrap(), &cpu[&hook]);
        println!("{variant} {hook}: max abs error {err:.2e}");
        assert!(
            err <= TOLERANCE,
            "{variant} {hook}: GPU differs from the reference by {err:e} > {TOLERANCE:e}"
        );
    }
}
