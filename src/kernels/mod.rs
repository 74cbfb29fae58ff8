//! The WGSL kernels of the forward pass, each behind a small Rust wrapper that knows its
//! parameters struct and how its work is split into workgroups. One file per shader in
//! `shaders/`; nothing here knows about GPT-Neo.
//!
//! Linear layers and attention (and, for `cpu`, layernorm) come in variants (llm.c style: the plain
//! version stays next to the tuned ones, and every variant passes the same tests against the CPU
//! reference):
//! - `simple`: one invocation per output, operands in storage buffers. The readable definition.
//! - `texture`: operands read as rgba32float texels with register tiles and subgroup shuffles
//!   (3–10 TFLOP/s on the model's linear layers on an NVIDIA H200 through Vulkan, against 0.47
//!   for `simple`; on lavapipe 6.6–11.6 GFLOP/s).
//! - `cpu`: the same texel operands, with kernels written for CPU Vulkan drivers (lavapipe), where
//!   a workgroup of 8 invocations is one 8-lane SIMD register: storage-texture reads,
//!   constant-lane subgroup broadcasts, register tiles unrolled before compilation, weights in a
//!   lane-packed texel layout, outputs stored as vec4s, and a barrier-free layernorm that reads
//!   texels too (shaders/linear_cpu.wgsl, attention_cpu.wgsl, layernorm_texels.wgsl, with
//!   layernorm_cpu.wgsl for widths that are not a multiple of 4). On lavapipe, in three
//!   `bench` runs measuring both: 1.9–3.6 times `texture`'s GFLOP/s on the linear layers, 4.3–6.0
//!   times as fast on attention at 600 tokens, 0.39–0.42 of its challenge forward.
//! - `tiled`: storage-buffer operands in HF's layout (no conversion passes), linear layers with
//!   32 × 32 workgroup-memory tiles whose k is split across 4 slices of 64 invocations
//!   (shaders/linear_tiled.wgsl), `simple`'s attention and layernorm. For GPUs: 13–19 TFLOP/s
//!   on the H200, 1.8–5.1 times `texture`'s (2 slices measured the same per block, 1 and 8
//!   slices 23% and 15% slower); on lavapipe its barriers make it 30 times slower than `cpu`
//!   (the full-shape test's forward: 99 s against 3.2 s).

mod attention;
mod embed;
mod layernorm;
mod linear;
mod texels;
mod unroll;

pub use attention::{AttentionShape, MAX_HEAD_DIM};
use linear::CpuTile;
pub use linear::{Epilogue, GpuLinear};
pub use texels::Scratch;
use texels::TexelLayout;
use unroll::{unroll, unroll_with};

use crate::gpu::{Gpu, Kernel};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Which implementation of the linear and attention kernels to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// One invocation per output, storage buffers only.
    Simple,
    /// Texel operands, register tiles, subgroup shuffles (needs subgroup support).
    Texture,
    /// Texel operands, 8-lane register tiles for CPU drivers (needs subgroups of 8 or more lanes).
    Cpu,
    /// Storage-buffer operands, workgroup-memory tiles split along k, for GPUs.
    Tiled,
}

impl Variant {
    pub const ALL: [Variant; 4] = [Variant::Simple, Variant::Texture, Variant::Cpu, Variant::Tiled];

    /// The fastest variant for `gpu`: `cpu` on a CPU driver with subgroups of 8 or more lanes,
    /// `tiled` on other adapters that allow its workgroups, else `simple`.
    pub fn best_for(gpu: &Gpu) -> Variant {
        let runs = |variant: Variant| variant.unsupported_on(gpu).is_none();
        if gpu.info.device_type == wgpu::DeviceType::Cpu && runs(Variant::Cpu) {
            Variant::Cpu
        } else if runs(Variant::Tiled) {
            Variant::Tiled
        } else {
            Variant::Simple
        }
    }

    /// Why `gpu` cannot run this variant (`None`: it can).
    pub fn unsupported_on(self, gpu: &Gpu) -> Option<String> {
        let adapter = gpu.adapter_name();
        match self {
            Variant::Simple => None,
            Variant::Tiled => {
                let limits = gpu.device.limits();
                let (bytes, invocations) = TILED_WORKGROUP;
                (limits.max_compute_workgroup_storage_size < bytes
                    || limits.max_compute_invocations_per_workgroup < invocations)
                    .then(|| {
                        format!(
                            "kernel variant tiled needs workgroups of {invocations} invocations with {bytes} bytes of workgroup memory; {adapter} allows {} with {}",
                            limits.max_compute_invocations_per_workgroup,
                            limits.max_compute_workgroup_storage_size
                        )
                    })
            }
            _ if !gpu.has_subgroups => {
                Some(format!("kernel variant {self} needs subgroup operations, which {adapter} lacks"))
            }
            Variant::Cpu if gpu.info.subgroup_min_size < CPU_MIN_SUBGROUP => Some(format!(
                "kernel variant cpu needs subgroups of at least {CPU_MIN_SUBGROUP} lanes; {adapter} has {}",
                gpu.info.subgroup_min_size
            )),
            _ => None,
        }
    }

    /// Whether this variant reads linear and attention operands as texel matrices.
    pub(super) fn reads_texels(self) -> bool {
        matches!(self, Variant::Texture | Variant::Cpu)
    }

    /// Whether this variant's linear kernel stores through `store_row`: then it is compiled with
    /// linear_rows.wgsl or, for layers whose n_out is a multiple of 4, linear_rows_vec4.wgsl.
    fn stores_rows(self) -> bool {
        matches!(self, Variant::Cpu | Variant::Tiled)
    }
}

/// The workgroup memory (bytes) and invocations of shaders/linear_tiled.wgsl: 4 slices × 2 tiles
/// × 16 k × 9 vec4s, and 4 slices × 64 invocations.
const TILED_WORKGROUP: (u32, u32) = (4 * 2 * 16 * 9 * 16, 256);

/// The subgroup lanes shaders/linear_cpu.wgsl broadcasts from.
const CPU_MIN_SUBGROUP: u32 = 8;

/// Head sizes the `cpu` variant makes its own attention pipelines for: GPT-Neo 125M's. With the
/// size fixed, shaders/attention_cpu.wgsl runs twice as fast on lavapipe; other sizes (128 in the
/// 1.3B and 2.7B models) take the general pipeline, and each pipeline made costs about 20 ms
/// there.
const CPU_FIXED_HEAD_DIMS: [usize; 1] = [64];

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Variant::Simple => "simple",
            Variant::Texture => "texture",
            Variant::Cpu => "cpu",
            Variant::Tiled => "tiled",
        })
    }
}

/// Every kernel of the forward, compiled once per device, for one variant.
pub struct Kernels {
    pub variant: Variant,
    embed: Kernel,
    layernorm: Kernel,
    /// The `cpu` variant's layernorm for widths that are a multiple of 4, reading x as texels.
    layernorm_texels: Option<Kernel>,
    /// The variant's linear kernel (shaders/linear*.wgsl followed by linear_output.wgsl, loops
    /// not yet unrolled: `cpu`'s depend on its tile), compiled into one pipeline per
    /// `LinearPipeline` as calls first need them.
    linear_source: &'static str,
    linear_name: &'static str,
    linear_pipelines: Mutex<HashMap<LinearPipeline, Arc<Kernel>>>,
    attention: Kernel,
    /// Attention pipelines made for one head size (used instead of `attention` for it).
    attention_by_head_dim: Vec<(usize, Kernel)>,
    /// The texel variants' conversion of activations to texels where a plain copy cannot do it
    /// (`None` for the other variants; see `Kernels::texels_of`).
    rows_to_texture: Option<Kernel>,
    /// Bound where a kernel's optional input or output is unused (a linear's plain epilogue); 16
    /// bytes, the least a vec4 array binding takes.
    placeholder: wgpu::Buffer,
    placeholder_out: wgpu::Buffer,
}

/// What one linear pipeline is specialised for: the pipeline constants of
/// shaders/linear_output.wgsl (EPILOGUE and WRITE_AUX), for the variants with row stores whether
/// they are vec4 stores, and for `cpu` its tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct LinearPipeline {
    epilogue: u32,
    write_aux: bool,
    vec4_rows: bool,
    cpu_tile: Option<CpuTile>,
}

/// A kernel's source followed by the part it shares with its siblings (WGSL has no includes).
macro_rules! with_shared {
    ($file:literal, $shared:literal) => {
        concat!(
            include_str!(concat!("../../shaders/", $file)),
            include_str!(concat!("../../shaders/", $shared))
        )
    };
}

impl Kernels {
    /// Compiles the kernels of `variant`, and the linear pipelines of a forward without hooks
    /// (plain bias, GELU and residual epilogues, none writing its optional output); the others
    /// are compiled when first used. The linear pipelines compile on threads of their own while
    /// this one compiles the rest: on a CPU driver each compile is LLVM's work on the calling
    /// thread (and wgpu's error scopes are per thread, so each sees only its own errors).
    pub fn new(gpu: &Gpu, variant: Variant) -> Result<Kernels> {
        if let Some(reason) = variant.unsupported_on(gpu) {
            bail!(reason);
        }
        let (linear_name, linear_source) = match variant {
            Variant::Simple => ("linear", with_shared!("linear.wgsl", "linear_output.wgsl")),
            Variant::Texture => ("linear_texture", with_shared!("linear_texture.wgsl", "linear_output.wgsl")),
            Variant::Cpu => ("linear_cpu", with_shared!("linear_cpu.wgsl", "linear_output.wgsl")),
            Variant::Tiled => ("linear_tiled", with_shared!("linear_tiled.wgsl", "linear_output.wgsl")),
        };
        // The layers of GPT-Neo-125M's blocks (epilogue, n_in, n_out): qkv, out_proj, c_fc, c_proj.
        let mut plain: Vec<LinearPipeline> = Vec::new();
        for (epilogue, n_in, n_out) in [
            (linear::EPILOGUE_BIAS, 768, 2304),
            (linear::EPILOGUE_RESIDUAL, 768, 768),
            (linear::EPILOGUE_GELU, 768, 3072),
            (linear::EPILOGUE_RESIDUAL, 3072, 768),
        ] {
            let key = LinearPipeline::for_layer(variant, epilogue, false, n_in, n_out);
            if !plain.contains(&key) {
                plain.push(key);
            }
        }

        std::thread::scope(|scope| {
            let linear_compiles: Vec<_> = plain
                .iter()
                .map(|&key| {
                    let compile = move || compile_linear(gpu, variant, linear_name, linear_source, key);
                    (key, scope.spawn(compile))
                })
                .collect();
            let mut attention_by_head_dim = Vec::new();
            let attention = match variant {
                Variant::Simple | Variant::Tiled => {
                    Kernel::new(gpu, "attention", with_shared!("attention.wgsl", "attention_keys.wgsl"))?
                }
                Variant::Texture => Kernel::new(
                    gpu,
                    "attention_texture",
                    with_shared!("attention_texture.wgsl", "attention_keys.wgsl"),
                )?,
                Variant::Cpu => {
                    let attention = unroll(with_shared!("attention_cpu.wgsl", "attention_keys.wgsl"))?;
                    for head_dim in CPU_FIXED_HEAD_DIMS {
                        let head_dim4 = [("HEAD_DIM4", (head_dim / 4) as f64)];
                        let kernel = Kernel::specialized(gpu, "attention_cpu", &attention, &head_dim4)?;
                        attention_by_head_dim.push((head_dim, kernel));
                    }
                    Kernel::new(gpu, "attention_cpu", &attention)?
                }
            };
            let kernels = Kernels {
                variant,
                embed: Kernel::new(gpu, "embed", include_str!("../../shaders/embed.wgsl"))?,
                layernorm: match variant {
                    Variant::Cpu => Kernel::new(
                        gpu,
                        "layernorm_cpu",
                        &unroll(with_shared!("layernorm_cpu.wgsl", "layernorm_rows.wgsl"))?,
                    )?,
                    _ => {
                        Kernel::new(gpu, "layernorm", with_shared!("layernorm.wgsl", "layernorm_rows.wgsl"))?
                    }
                },
                layernorm_texels: (variant == Variant::Cpu)
                    .then(|| {
                        Kernel::new(
                            gpu,
                            "layernorm_texels",
                            include_str!("../../shaders/layernorm_texels.wgsl"),
                        )
                    })
                    .transpose()?,
                linear_source,
                linear_name,
                linear_pipelines: Mutex::new(HashMap::new()),
                attention,
                attention_by_head_dim,
                rows_to_texture: variant
                    .reads_texels()
                    .then(|| {
                        Kernel::new(
                            gpu,
                            "rows_to_texture",
                            include_str!("../../shaders/rows_to_texture.wgsl"),
                        )
                    })
                    .transpose()?,
                placeholder: gpu.storage("placeholder", 4)?,
                placeholder_out: gpu.storage("placeholder out", 4)?,
            };
            {
                let mut pipelines = kernels.linear_pipelines.lock().unwrap_or_else(|p| p.into_inner());
                for (key, compile) in linear_compiles {
                    let kernel = compile.join().expect("a linear pipeline compile panicked")?;
                    pipelines.insert(key, Arc::new(kernel));
                }
            }
            Ok(kernels)
        })
    }

    /// The linear pipeline for `key`, compiled on first use (without holding the lock: two
    /// threads asking for the same new key both compile it, and the first to finish is kept).
    fn linear_pipeline(&self, gpu: &Gpu, key: LinearPipeline) -> Result<Arc<Kernel>> {
        let pipelines = || self.linear_pipelines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(kernel) = pipelines().get(&key) {
            return Ok(kernel.clone());
        }
        let kernel = Arc::new(compile_linear(gpu, self.variant, self.linear_name, self.linear_source, key)?);
        Ok(pipelines().entry(key).or_insert(kernel).clone())
    }
}

/// Compiles `variant`'s linear kernel `source` (named `name`) for `key`.
fn compile_linear(
    gpu: &Gpu,
    variant: Variant,
    name: &'static str,
    source: &str,
    key: LinearPipeline,
) -> Result<Kernel> {
    let rows = match (variant.stores_rows(), key.vec4_rows) {
        (false, _) => "",
        (true, false) => include_str!("../../shaders/linear_rows.wgsl"),
        (true, true) => include_str!("../../shaders/linear_rows_vec4.wgsl"),
    };
    let mut constants = vec![("EPILOGUE", key.epilogue as f64), ("WRITE_AUX", key.write_aux as u32 as f64)];
    let mut tile = Vec::new();
    if let Some(cpu_tile) = key.cpu_tile {
        tile.push(("TOKEN_PAIRS", cpu_tile.token_pairs));
        constants.push(("OUTPUTS_FIRST", cpu_tile.outputs_first as u32 as f64));
    }
    let source = unroll_with(&format!("{source}{rows}"), &tile)?;
    Kernel::specialized(gpu, name, &source, &constants)
}

/// Workgroups needed to cover `items` items, `per_group` at a time.
fn groups_for(items: usize, per_group: usize) -> u32 {
    items.div_ceil(per_group) as u32
}
