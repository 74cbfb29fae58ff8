//! Shared by the integration tests: one GPU for the whole test binary, and small helpers.
#![allow(dead_code)]

use neoprobe::engine::Engine;
use neoprobe::gpu::Gpu;
use neoprobe::kernels::{Kernels, Shapes, Variant};
use neoprobe::model::{AttentionKind, GptNeoConfig, GptNeoWeights};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The test binary's GPU. No adapter is a test failure, never a skip.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new().unwrap_or_else(|e| panic!("GPU tests need a GPU adapter: {e:#}")))
}

/// The kernels of `variant`, compiled for the test binary's GPU when a test first asks for them
/// (pipelines as calls first need them).
pub fn kernels(variant: Variant) -> &'static Kernels {
    static KERNELS: [OnceLock<Kernels>; Variant::ALL.len()] = [const { OnceLock::new() }; Variant::ALL.len()];
    let index = Variant::ALL.iter().position(|&v| v == variant).expect("a shipped variant");
    KERNELS[index]
        .get_or_init(|| Kernels::new(gpu(), variant, &Shapes::default()).unwrap_or_else(|e| panic!("{e:#}")))
}

/// Puts `weights` on a fresh engine (its own device) with the kernel `variant`.
pub fn engine(weights: &GptNeoWeights, variant: Variant) -> Engine {
    Engine::new(weights, Some(variant), Default::default())
        .unwrap_or_else(|e| panic!("GPU tests need a GPU adapter: {e:#}"))
}

/// A GPT-Neo configuration with alternating global/local layers.
pub fn config(
    hidden: usize,
    layers: usize,
    heads: usize,
    window: usize,
    vocab: usize,
    positions: usize,
) -> GptNeoConfig {
    GptNeoConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        num_layers: layers,
        num_heads: heads,
        intermediate_size: 4 * hidden,
        window_size: window,
        max_position_embeddings: positions,
        layer_norm_epsilon: 1e-5,
        attention_layers: (0..layers)
            .map(|i| if i % 2 == 0 { AttentionKind::Global } else { AttentionKind::Local })
            .collect(),
    }
}

/// The largest |a − b| over two equally long arrays (NaN counts as infinitely far).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "arrays differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| if x.is_nan() || y.is_nan() { f32::INFINITY } else { (x - y).abs() })
        .fold(0.0, f32::max)
}

/// Defines `mod simple`, `mod cpu` and `mod tiled`, each with one `#[test]` per listed function
/// `fn name(variant: Variant)` of the enclosing file, run with that variant: `cargo test cpu::`
/// runs one variant alone.
#[macro_export]
macro_rules! test_each_variant {
    ($($test:ident),+ $(,)?) => {
        $crate::test_each_variant!(@variant simple, Simple, $($test),+);
        $crate::test_each_variant!(@variant cpu, Cpu, $($test),+);
        $crate::test_each_variant!(@variant tiled, Tiled, $($test),+);

        /// Every shipped variant has its module of tests.
        #[test]
        fn every_variant_is_tested() {
            use neoprobe::kernels::Variant;
            assert_eq!(Variant::ALL, [Variant::Simple, Variant::Cpu, Variant::Tiled]);
        }
    };
    (@variant $module:ident, $variant:ident, $($test:ident),+) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test(neoprobe::kernels::Variant::$variant);
                }
            )+
        }
    };
}

/// What a run of the built `neoprobe` binary printed, and whether it succeeded.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the built binary with `args` (Mesa's runtime-folder warning kept off stderr).
pub fn neoprobe(args: &[&str]) -> Run {
    neoprobe_with_env(args, &[])
}

/// `neoprobe` with these environment variables set too.
pub fn neoprobe_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_neoprobe"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A float32 C-order `.npy` file: (shape, values).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape =
        shape_text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    (shape, bytemuck::pod_collect_to_vec(&bytes[10 + header_len..]))
}
