//! The WGSL kernels of the forward pass, each behind a small Rust wrapper that knows its
//! parameters struct and how its work is split into workgroups. One file per shader in
//! `shaders/`; nothing here knows about GPT-Neo.
//!
//! Linear layers, attention and layernorm come in variants, defined in one table
//! ([`variants::VARIANTS`]): the plain `simple` one stays beside the tuned ones (llm.c style), and
//! every variant passes the same tests against the CPU reference.

mod attention;
mod embed;
mod intervene;
mod layernorm;
mod linear;
mod texels;
mod unfused_epilogue;
mod unroll;
mod variants;

pub use attention::{AttentionShape, MAX_HEAD_DIM};
pub use embed::GpuPositions;
pub use intervene::GpuIntervention;
pub use layernorm::GpuLayerNorm;
pub use linear::{Epilogue, Fused, GpuLinear, LinearUse};
pub use texels::Scratch;
pub use variants::{
    CpuTile, DefaultOn, KOrder, LinearSplit, Operands, Owner, Source, Variant, VariantSpec, VARIANTS,
};

use linear::LinearPipeline;
use texels::TexelLayout;
use unroll::unroll_with;

use crate::gpu::{Gpu, Kernel};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// What a model will run, so that its pipelines are compiled before the first forward: the
/// linear layers' shapes and epilogues (without optional outputs) and the attention head sizes.
#[derive(Clone, Debug, Default)]
pub struct Shapes {
    pub linears: Vec<LinearUse>,
    pub head_dims: Vec<usize>,
}

/// Deliberate errors compiled into the kernels, for `neoprobe verify --inject-fault` (all 0 in
/// normal use): the relative amount by which each linear output, attention score and layernorm
/// 1/√(var + eps) is scaled (each kernel's FAULT constant).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    pub linear: f32,
    pub attention: f32,
    pub layernorm: f32,
}

/// The rows a kernel call runs over: how many tokens, and the scratch textures made for the batch
/// (the texel variants copy their operands there).
#[derive(Clone, Copy)]
pub struct Rows<'s> {
    pub n_tokens: usize,
    pub scratch: &'s Scratch,
}

/// Every kernel of the forward, compiled once per device, for one variant.
pub struct Kernels {
    pub variant: Variant,
    spec: &'static VariantSpec,
    faults: Faults,
    embed: Kernel,
    /// In-place interventions on a hook's buffer (ablation, steering, patching).
    intervene: Kernel,
    layernorm: Kernel,
    layernorm_texels: Option<Kernel>,
    /// The variant's linear kernel, one pipeline per `LinearPipeline`, compiled when first needed.
    linear_pipelines: Pipelines<LinearPipeline>,
    /// Attention, one pipeline per head size where the variant fixes it, else one (key 0).
    attention_pipelines: Pipelines<usize>,
    /// The texel variants' conversion of activations to texels where a plain copy cannot do it.
    rows_to_texture: Option<Kernel>,
    /// A linear layer's epilogue apart from it (for interventions on its input), one pipeline per
    /// EPILOGUE, compiled when first needed.
    unfused_epilogue_pipelines: Pipelines<u32>,
    /// Bound where a kernel's optional input or output is unused (a linear's plain epilogue).
    placeholder: wgpu::Buffer,
    placeholder_out: wgpu::Buffer,
}

/// Pipelines of one kernel source specialised by `K`, compiled on first use.
struct Pipelines<K>(Mutex<HashMap<K, Arc<Kernel>>>);

impl<K: Copy + Eq + Hash> Pipelines<K> {
    fn new() -> Self {
        Pipelines(Mutex::new(HashMap::new()))
    }

    /// The pipeline for `key`, made by `make` if it is not there yet (without holding the
    /// lock: two threads asking for the same new key both compile it, and the first is kept).
    fn get(&self, key: K, make: impl FnOnce() -> Result<Kernel>) -> Result<Arc<Kernel>> {
        let map = || self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(kernel) = map().get(&key) {
            return Ok(kernel.clone());
        }
        let kernel = Arc::new(make()?);
        Ok(map().entry(key).or_insert(kernel).clone())
    }
}

/// Compiles `text` (the WGSL of `source`, with what is appended to it) after expanding its `// unroll` blocks with
/// `unroll` bound, and with its override constants set to `constants`.
fn compile(
    gpu: &Gpu,
    source: &Source,
    text: &str,
    unroll: &[(&str, usize)],
    constants: &[(&str, f64)],
) -> Result<Kernel> {
    let mut kernel = Kernel::specialized(
        gpu,
        source.file.trim_end_matches(".wgsl"),
        &unroll_with(text, unroll)?,
        constants,
    )?;
    kernel.workgroup_size = source.workgroup_size;
    Ok(kernel)
}

/// Compiles a whole kernel source with its override constants set to `constants`.
fn compile_source(gpu: &Gpu, source: &Source, constants: &[(&str, f64)]) -> Result<Kernel> {
    compile(gpu, source, source.text, &[], constants)
}

impl Kernels {
    /// Compiles the kernels of `variant` and the pipelines `shapes` asks for; other pipelines are
    /// compiled when first used. The linear pipelines compile on threads of their own while this
    /// one compiles the rest: on a CPU driver each compile is LLVM's work on the calling thread
    /// (and wgpu's error scopes are per thread, so each sees only its own errors).
    pub fn new(gpu: &Gpu, variant: Variant, shapes: &Shapes) -> Result<Kernels> {
        Kernels::with_faults(gpu, variant, shapes, Faults::default())
    }

    /// `new` with deliberate errors compiled in (`neoprobe verify --inject-fault`).
    pub fn with_faults(gpu: &Gpu, variant: Variant, shapes: &Shapes, faults: Faults) -> Result<Kernels> {
        if let Some(reason) = variant.unsupported_on(gpu) {
            bail!(reason);
        }
        let spec = variant.spec();
        let texels = spec.operands == Operands::Texels;
        let embed = Source {
            file: "embed.wgsl",
            text: include_str!("../../shaders/embed.wgsl"),
            workgroup_size: 256,
        };
        let intervene = Source {
            file: "intervene.wgsl",
            text: include_str!("../../shaders/intervene.wgsl"),
            workgroup_size: 64,
        };
        let rows_to_texture = Source {
            file: "rows_to_texture.wgsl",
            text: include_str!("../../shaders/rows_to_texture.wgsl"),
            workgroup_size: 256,
        };
        let layernorm_fault = [("FAULT", faults.layernorm as f64)];
        let kernels = Kernels {
            variant,
            spec,
            faults,
            embed: compile_source(gpu, &embed, &[])?,
            intervene: compile_source(gpu, &intervene, &[])?,
            layernorm: compile_source(gpu, &spec.layernorm, &layernorm_fault)?,
            layernorm_texels: spec
                .layernorm_texels
                .as_ref()
                .map(|s| compile_source(gpu, s, &layernorm_fault))
                .transpose()?,
            linear_pipelines: Pipelines::new(),
            attention_pipelines: Pipelines::new(),
            rows_to_texture: texels.then(|| compile_source(gpu, &rows_to_texture, &[])).transpose()?,
            unfused_epilogue_pipelines: Pipelines::new(),
            placeholder: gpu.storage("placeholder", 4)?,
            placeholder_out: gpu.storage("placeholder out", 4)?,
        };
        let mut keys: Vec<LinearPipeline> = Vec::new();
        for linear in &shapes.linears {
            let key = LinearPipeline::new(spec, linear.fused, false, linear.n_in, linear.n_out);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        std::thread::scope(|scope| {
            let compiles: Vec<_> = keys
                .iter()
                .map(|&key| {
                    let kernels = &kernels;
                    scope.spawn(move || kernels.linear_pipeline(gpu, key).map(drop))
                })
                .collect();
            for &head_dim in &shapes.head_dims {
                kernels.attention_pipeline(gpu, head_dim)?;
            }
            for compile in compiles {
                compile.join().expect("a linear pipeline compile panicked")?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(kernels)
    }

    /// This variant's row of the variant table.
    pub fn spec(&self) -> &'static VariantSpec {
        self.spec
    }

    fn linear_pipeline(&self, gpu: &Gpu, key: LinearPipeline) -> Result<Arc<Kernel>> {
        self.linear_pipelines.get(key, || key.compile(gpu, &self.spec.linear, self.faults.linear))
    }

    fn attention_pipeline(&self, gpu: &Gpu, head_dim: usize) -> Result<Arc<Kernel>> {
        if self.spec.attention_per_head_dim {
            self.attention_pipelines.get(head_dim, || {
                let constants =
                    [("HEAD_DIM4", (head_dim / 4) as f64), ("FAULT", self.faults.attention as f64)];
                compile_source(gpu, &self.spec.attention, &constants)
            })
        } else {
            let constants = [("FAULT", self.faults.attention as f64)];
            self.attention_pipelines.get(0, || compile_source(gpu, &self.spec.attention, &constants))
        }
    }
}
