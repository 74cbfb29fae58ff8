//! The kernel variants, defined in one table: for each, the shader files of its linear layers,
//! attention and layernorm, how it lays out their operands, how it splits a linear layer into
//! workgroups, what it needs of the adapter and where it is the default. The rest of the crate
//! asks this table rather than matching on [`Variant`].
//!
//! Why each variant is shaped as it is, with its measurements: docs/kernels.md. Experiments that
//! did not win (the retired `texture` variant among them): docs/experiments.md.

use crate::gpu::{grid_1d, Gpu};
use std::fmt;

/// Which implementation of the linear, attention and layernorm kernels to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Variant {
    /// One invocation per output, storage buffers only: the readable definition.
    Simple,
    /// 8-lane register tiles over texel operands, for CPU Vulkan drivers (lavapipe).
    Cpu,
    /// Workgroup-memory tiles with k split across slices, for GPUs.
    Tiled,
}

impl Variant {
    /// Every shipped variant, in the table's order.
    pub const ALL: [Variant; 3] = [Variant::Simple, Variant::Cpu, Variant::Tiled];

    /// This variant's row of the table.
    pub fn spec(self) -> &'static VariantSpec {
        VARIANTS.iter().find(|spec| spec.variant == self).expect("every variant has a row in VARIANTS")
    }

    /// The variant `gpu` runs when none is asked for: the first row of the table that is the
    /// default on this kind of adapter and that it can run; `simple` runs everywhere.
    pub fn best_for(gpu: &Gpu) -> Variant {
        let cpu_driver = gpu.info.device_type == wgpu::DeviceType::Cpu;
        VARIANTS
            .iter()
            .find(|spec| spec.default_on.includes(cpu_driver) && spec.variant.unsupported_on(gpu).is_none())
            .map_or(Variant::Simple, |spec| spec.variant)
    }

    /// Why `gpu` cannot run this variant (`None`: it can).
    pub fn unsupported_on(self, gpu: &Gpu) -> Option<String> {
        self.spec().needs.unmet_on(self, gpu)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.spec().name)
    }
}

/// One variant: its sources, operand layout, dispatch shape and the adapters it suits.
pub struct VariantSpec {
    pub variant: Variant,
    pub name: &'static str,
    /// One line: what its kernels do.
    pub about: &'static str,
    pub default_on: DefaultOn,
    pub needs: Needs,
    /// How linear layers and attention read their operands.
    pub operands: Operands,
    pub linear: Source,
    pub linear_split: LinearSplit,
    pub attention: Source,
    /// Whether attention pipelines are made per head size (a pipeline constant fixes it, so the
    /// driver drops the unrolled head's guards).
    pub attention_per_head_dim: bool,
    pub layernorm: Source,
    /// A layernorm that reads its input as texels, for widths that are a multiple of 4.
    pub layernorm_texels: Option<Source>,
}

/// A kernel's WGSL: its own file followed by the files it shares with its siblings (WGSL has no
/// includes). Its `// unroll` blocks, if any, are expanded before compilation (src/kernels/unroll.rs).
pub struct Source {
    /// The kernel's own file in `shaders/`.
    pub file: &'static str,
    pub text: &'static str,
    /// Invocations per workgroup (its `@workgroup_size`).
    pub workgroup_size: u32,
}

/// Where a variant is the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultOn {
    /// CPU Vulkan drivers (device type `Cpu`).
    CpuDrivers,
    /// Every adapter that is not a CPU driver.
    Gpus,
    /// Only where no other variant runs.
    Fallback,
}

impl DefaultOn {
    fn includes(self, cpu_driver: bool) -> bool {
        match self {
            DefaultOn::CpuDrivers => cpu_driver,
            DefaultOn::Gpus => !cpu_driver,
            DefaultOn::Fallback => false,
        }
    }
}

/// What a variant needs of the adapter beyond WebGPU's defaults.
pub struct Needs {
    /// Subgroup operations with at least this many lanes.
    pub subgroup_lanes: Option<u32>,
    /// Invocations per workgroup and bytes of workgroup memory of its largest kernel.
    pub workgroup_invocations: u32,
    pub workgroup_bytes: u32,
}

impl Needs {
    fn unmet_on(&self, variant: Variant, gpu: &Gpu) -> Option<String> {
        let adapter = gpu.adapter_name();
        let limits = gpu.device.limits();
        if let Some(lanes) = self.subgroup_lanes {
            if !gpu.has_subgroups {
                return Some(format!(
                    "kernel variant {variant} needs subgroup operations, which {adapter} lacks"
                ));
            }
            if gpu.info.subgroup_min_size < lanes {
                return Some(format!(
                    "kernel variant {variant} needs subgroups of at least {lanes} lanes; {adapter} has {}",
                    gpu.info.subgroup_min_size
                ));
            }
        }
        if limits.max_compute_invocations_per_workgroup < self.workgroup_invocations
            || limits.max_compute_workgroup_storage_size < self.workgroup_bytes
        {
            return Some(format!(
                "kernel variant {variant} needs workgroups of {} invocations with {} bytes of workgroup memory; {adapter} allows {} with {}",
                self.workgroup_invocations,
                self.workgroup_bytes,
                limits.max_compute_invocations_per_workgroup,
                limits.max_compute_workgroup_storage_size
            ));
        }
        None
    }
}

/// How linear layers and attention read their operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    /// Row-major f32 storage buffers; weights in HF's `[out, in]` layout, as loaded.
    Buffers,
    /// rgba32float storage textures: activations copied into texel rows before each call,
    /// weights packed lane by lane at upload (`TexelLayout` in src/kernels/texels.rs).
    Texels,
}

/// How a linear kernel splits `y[t, n] = Σ_k x[t, k] · w[n, k]` into workgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearSplit {
    /// shaders/linear.wgsl: one invocation per output, a workgroup covering `outputs` consecutive
    /// outputs of one token; the workgroups on grid_1d's folded grid.
    PerOutput { outputs: usize },
    /// shaders/linear_cpu.wgsl: one 8-lane workgroup computes a tile of tokens × 32 outputs, the
    /// tile chosen by the input width (`CpuTile`).
    CpuTiles,
    /// shaders/linear_tiled.wgsl: a workgroup computes `tile` tokens × `tile` outputs with
    /// `k_slices` slices of 64 invocations, each slice summing every `k_slices`-th block of
    /// `block_k` values of k.
    Tiles { tile: usize, k_slices: usize, block_k: usize },
}

impl LinearSplit {
    /// Invocations per workgroup.
    pub fn workgroup_size(self) -> usize {
        match self {
            LinearSplit::PerOutput { outputs } => outputs,
            LinearSplit::CpuTiles => CPU_LANES,
            LinearSplit::Tiles { k_slices, .. } => 64 * k_slices,
        }
    }

    /// Whether the kernel hands four outputs of a token at a time to `store_row`
    /// (shaders/linear_rows.wgsl, or linear_rows_vec4.wgsl where n_out is a multiple of 4).
    pub fn stores_rows(self) -> bool {
        !matches!(self, LinearSplit::PerOutput { .. })
    }

    /// The dispatch grid over `n_tokens` tokens, `n_in` inputs and `n_out` outputs.
    pub fn grid(self, n_tokens: usize, n_in: usize, n_out: usize) -> [u32; 3] {
        match self {
            LinearSplit::PerOutput { outputs } => grid_1d(groups_for(n_out, outputs) * n_tokens as u32),
            LinearSplit::CpuTiles => CpuTile::for_n_in(n_in).grid(n_tokens, n_out),
            LinearSplit::Tiles { tile, .. } => [groups_for(n_out, tile), groups_for(n_tokens, tile), 1],
        }
    }

    /// Which workgroup and invocations compute output `(t, n)` of a layer of `n_in` inputs and
    /// `n_out` outputs over `n_tokens` tokens. (tests/kernels.rs checks this against the ids the
    /// kernels themselves record, for every variant.)
    pub fn owner(self, t: usize, n: usize, n_tokens: usize, n_in: usize, n_out: usize) -> Owner {
        let grid = self.grid(n_tokens, n_in, n_out);
        match self {
            LinearSplit::PerOutput { outputs } => {
                let group = t * n_out.div_ceil(outputs) + n / outputs;
                let gx = grid[0] as usize;
                let invocation = (n % outputs) as u32;
                Owner::single([(group % gx) as u32, (group / gx) as u32], invocation)
            }
            LinearSplit::CpuTiles => {
                let tile = CpuTile::for_n_in(n_in);
                let (tokens, outputs) =
                    ((t / (2 * tile.token_pairs)) as u32, (n / CPU_OUTPUTS_PER_GROUP) as u32);
                let workgroup = if tile.outputs_first { [outputs, tokens] } else { [tokens, outputs] };
                Owner::single(workgroup, (n % CPU_OUTPUTS_PER_GROUP / 4) as u32)
            }
            LinearSplit::Tiles { tile, k_slices, .. } => {
                let (row, column) = (t % tile, n % tile);
                let lane = (row / 4) * (tile / 4) + column / 4;
                let workgroup = [(n / tile) as u32, (t / tile) as u32];
                Owner {
                    workgroup,
                    invocation: ((row * tile / 4 + column / 4) % self.workgroup_size()) as u32,
                    partial_sums: (0..k_slices).map(|s| (s * 64 + lane) as u32).collect(),
                }
            }
        }
    }

    /// The outputs one workgroup computes: (tokens, outputs) of its tile, for a layer of `n_in`
    /// inputs.
    pub fn tile(self, n_in: usize) -> (usize, usize) {
        match self {
            LinearSplit::PerOutput { outputs } => (1, outputs),
            LinearSplit::CpuTiles => (2 * CpuTile::for_n_in(n_in).token_pairs, CPU_OUTPUTS_PER_GROUP),
            LinearSplit::Tiles { tile, .. } => (tile, tile),
        }
    }

    /// What the workgroup computing output `(t, n)` reads of x and of the weights, in words.
    pub fn reads(self, t: usize, n: usize, n_tokens: usize, n_in: usize, n_out: usize) -> String {
        let (tokens, outputs) = self.tile(n_in);
        let (t0, n0) = (t / tokens * tokens, n / outputs * outputs);
        let (t1, n1) = ((t0 + tokens).min(n_tokens), (n0 + outputs).min(n_out));
        match self {
            LinearSplit::PerOutput { outputs } => format!(
                "x row {t} (all {n_in} values, read by each of its {outputs} invocations) and weight rows \
                 {n0}..{n1}, one per invocation: invocation {} reads w[{n}, 0..{n_in}]",
                n % outputs
            ),
            LinearSplit::CpuTiles => format!(
                "x rows {t0}..{t1} (a tile of {tokens} tokens; rows past the last token repeat it and are \
                 not stored) and weight rows {n0}..{n1}, in passes of 32 values of k (8 texels): each lane \
                 reads its own 4 weight rows (this output's lane: rows {}..{}) and one texel of each x \
                 row, then broadcasts the x texels to the other 7 lanes",
                n / 4 * 4,
                n / 4 * 4 + 4
            ),
            LinearSplit::Tiles { tile, k_slices, block_k } => format!(
                "x rows {t0}..{t1} and weight rows {n0}..{n1} (a {tile} × {tile} tile), staged in \
                 workgroup memory {block_k} values of k at a time by each of {k_slices} slices of 64 \
                 invocations"
            ),
        }
    }

    /// The order in which the kernel sums the products `x[t, k] · w[n, k]`.
    pub fn k_order(self) -> KOrder {
        match self {
            LinearSplit::PerOutput { .. } => KOrder { slices: 1, block: SIMPLE_BLOCK },
            LinearSplit::CpuTiles => KOrder { slices: 1, block: 4 * CPU_PASS_TEXELS },
            LinearSplit::Tiles { k_slices, block_k, .. } => KOrder { slices: k_slices, block: block_k },
        }
    }
}

/// The BLOCK of shaders/linear.wgsl.
const SIMPLE_BLOCK: usize = 32;
/// Texels of k per pass of shaders/linear_cpu.wgsl (its kb step).
const CPU_PASS_TEXELS: usize = 8;

/// Who computes one output of a linear layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The workgroup's (x, y) in the dispatch grid.
    pub workgroup: [u32; 2],
    /// The invocation (local_invocation_index) that adds the bias, applies the epilogue and
    /// stores the output.
    pub invocation: u32,
    /// The invocations whose partial sums it adds up, when the sum is split (else itself).
    pub partial_sums: Vec<u32>,
}

impl Owner {
    fn single(workgroup: [u32; 2], invocation: u32) -> Owner {
        Owner { workgroup, invocation, partial_sums: vec![invocation] }
    }
}

/// The order of a linear kernel's sum over k, in f32: blocked summation. The k are cut into
/// blocks of `block` consecutive values; `slices` partial sums each take every `slices`-th block
/// (slice s: blocks s, s + slices, …); a block's products are summed on their own, from zero, and
/// each block sum is added to its slice's sum in order; then the slices' sums are added in slice
/// order, then the bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KOrder {
    pub slices: usize,
    pub block: usize,
}

impl KOrder {
    /// The blocks (ranges of k) of each slice, in the order the kernel adds them.
    pub fn blocks(self, n_in: usize) -> Vec<Vec<std::ops::Range<usize>>> {
        (0..self.slices)
            .map(|s| {
                (s * self.block..n_in)
                    .step_by(self.slices * self.block)
                    .map(|start| start..(start + self.block).min(n_in))
                    .collect()
            })
            .collect()
    }

    /// Σ_k x[k]·w[k] + bias in this order, in f32: each product rounded and then added
    /// (`fused`: each multiply-add rounded once, as a GPU that contracts them to FMA computes it).
    pub fn replay(self, x: &[f32], w: &[f32], bias: f32, fused: bool) -> f32 {
        let add = |acc: f32, k: usize| if fused { x[k].mul_add(w[k], acc) } else { acc + x[k] * w[k] };
        let slice_sums = self.blocks(x.len()).into_iter().map(|blocks| {
            blocks.into_iter().map(|block| block.fold(0.0, add)).fold(0.0, |sum, block_sum| sum + block_sum)
        });
        slice_sums.reduce(|total, slice| total + slice).unwrap_or(0.0) + bias
    }

    /// The order in words.
    pub fn describe(self, n_in: usize) -> String {
        let KOrder { slices, block } = self;
        if slices == 1 {
            format!(
                "blocks of {block} consecutive k (k = 0..{block}, {block}..{} …), each summed in f32 from zero \
                 and added in order to one running sum; then + bias",
                (2 * block).min(n_in)
            )
        } else {
            format!(
                "{slices} slices: slice s takes the blocks s, s + {slices}, … of {block} consecutive k \
                 (slice 0: k = 0..{block}, {}..{} …); each block summed in f32 from zero and added to its \
                 slice's sum; then slice 0 + slice 1 + … + slice {}, then + bias",
                slices * block,
                slices * block + block,
                slices - 1
            )
        }
    }
}

/// Lanes of one `cpu` workgroup: the subgroup its linear kernel broadcasts across.
const CPU_LANES: usize = 8;
/// Outputs per workgroup of shaders/linear_cpu.wgsl (its tokens per workgroup: `CpuTile`).
pub(super) const CPU_OUTPUTS_PER_GROUP: usize = 32;
/// The widest input that linear_cpu.wgsl runs in its tile for narrow inputs.
const CPU_NARROW_MAX_N_IN: usize = 1024;

/// How linear_cpu.wgsl splits a layer: 2 · `token_pairs` tokens per workgroup (its TOKEN_PAIRS),
/// and whether consecutive workgroups advance along the outputs (OUTPUTS_FIRST) or the tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuTile {
    pub token_pairs: usize,
    pub outputs_first: bool,
}

impl CpuTile {
    /// Narrow inputs: 32 tokens, tokens first, so consecutive workgroups reuse the same weight
    /// rows; wide inputs: 16 tokens, outputs first, so they reuse the same rows of x, the smaller
    /// of the two there. The tiles are the ones measured fastest (docs/cpu-driver.md).
    pub fn for_n_in(n_in: usize) -> CpuTile {
        if n_in <= CPU_NARROW_MAX_N_IN {
            CpuTile { token_pairs: 16, outputs_first: false }
        } else {
            CpuTile { token_pairs: 8, outputs_first: true }
        }
    }

    /// The dispatch grid over `n_tokens` tokens and `n_out` outputs.
    pub fn grid(self, n_tokens: usize, n_out: usize) -> [u32; 3] {
        let (tokens, outputs) =
            (groups_for(n_tokens, 2 * self.token_pairs), groups_for(n_out, CPU_OUTPUTS_PER_GROUP));
        if self.outputs_first {
            [outputs, tokens, 1]
        } else {
            [tokens, outputs, 1]
        }
    }
}

/// Workgroups needed to cover `items` items, `per_group` at a time.
pub(super) fn groups_for(items: usize, per_group: usize) -> u32 {
    items.div_ceil(per_group) as u32
}

/// A kernel's source followed by the part it shares with its siblings.
macro_rules! shader {
    ($file:literal $(, $shared:literal)*) => {
        concat!(include_str!(concat!("../../shaders/", $file)) $(, include_str!(concat!("../../shaders/", $shared)))*)
    };
}

/// shaders/linear_tiled.wgsl's tile: 32 × 32, k split across 4 slices, blocks of 16 k.
const TILED_SPLIT: LinearSplit = LinearSplit::Tiles { tile: 32, k_slices: 4, block_k: 16 };
/// linear_tiled.wgsl's workgroup memory: per slice an x and a w tile of 16 k × 9 vec4s.
const TILED_WORKGROUP_BYTES: u32 = 4 * 2 * 16 * 9 * 16;

/// The plain attention and layernorm of `simple`, which `tiled` runs too.
const PLAIN_ATTENTION: Source = Source {
    file: "attention.wgsl",
    text: shader!("attention.wgsl", "attention_keys.wgsl"),
    workgroup_size: 64,
};
const PLAIN_LAYERNORM: Source = Source {
    file: "layernorm.wgsl",
    text: shader!("layernorm.wgsl", "layernorm_rows.wgsl"),
    workgroup_size: 64,
};

/// The shipped variants.
pub static VARIANTS: [VariantSpec; 3] = [
    VariantSpec {
        variant: Variant::Simple,
        name: "simple",
        about: "one invocation per output, storage buffers; the readable definition",
        default_on: DefaultOn::Fallback,
        needs: Needs { subgroup_lanes: None, workgroup_invocations: 64, workgroup_bytes: 256 },
        operands: Operands::Buffers,
        linear: Source {
            file: "linear.wgsl",
            text: shader!("linear.wgsl", "epilogue.wgsl", "linear_output.wgsl"),
            workgroup_size: 64,
        },
        linear_split: LinearSplit::PerOutput { outputs: 64 },
        attention: PLAIN_ATTENTION,
        attention_per_head_dim: false,
        layernorm: PLAIN_LAYERNORM,
        layernorm_texels: None,
    },
    VariantSpec {
        variant: Variant::Cpu,
        name: "cpu",
        about:
            "8-lane register tiles over texel operands, unrolled before compilation; for CPU Vulkan drivers",
        default_on: DefaultOn::CpuDrivers,
        needs: Needs {
            subgroup_lanes: Some(CPU_LANES as u32),
            workgroup_invocations: 64,
            workgroup_bytes: 0,
        },
        operands: Operands::Texels,
        linear: Source {
            file: "linear_cpu.wgsl",
            text: shader!("linear_cpu.wgsl", "epilogue.wgsl", "linear_output.wgsl"),
            workgroup_size: 8,
        },
        linear_split: LinearSplit::CpuTiles,
        attention: Source {
            file: "attention_cpu.wgsl",
            text: shader!("attention_cpu.wgsl", "attention_keys.wgsl"),
            workgroup_size: 64,
        },
        attention_per_head_dim: true,
        layernorm: Source {
            file: "layernorm_cpu.wgsl",
            text: shader!("layernorm_cpu.wgsl", "layernorm_rows.wgsl"),
            workgroup_size: 8,
        },
        layernorm_texels: Some(Source {
            file: "layernorm_texels.wgsl",
            text: shader!("layernorm_texels.wgsl"),
            workgroup_size: 8,
        }),
    },
    VariantSpec {
        variant: Variant::Tiled,
        name: "tiled",
        about: "32 × 32 workgroup-memory tiles with k split across 4 slices, storage buffers; for GPUs",
        default_on: DefaultOn::Gpus,
        needs: Needs {
            subgroup_lanes: None,
            workgroup_invocations: 256,
            workgroup_bytes: TILED_WORKGROUP_BYTES,
        },
        operands: Operands::Buffers,
        linear: Source {
            file: "linear_tiled.wgsl",
            text: shader!("linear_tiled.wgsl", "epilogue.wgsl", "linear_output.wgsl"),
            workgroup_size: 256,
        },
        linear_split: TILED_SPLIT,
        attention: PLAIN_ATTENTION,
        attention_per_head_dim: false,
        layernorm: PLAIN_LAYERNORM,
        layernorm_texels: None,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_one_row_named_as_clap_names_it() {
        use clap::ValueEnum;
        for variant in Variant::ALL {
            let rows = VARIANTS.iter().filter(|spec| spec.variant == variant).count();
            assert_eq!(rows, 1, "{variant:?}");
            let clap_name = variant.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(clap_name, variant.spec().name);
        }
        assert_eq!(Variant::value_variants().len(), VARIANTS.len());
    }

    /// The sizes the table states are the shaders' own `@workgroup_size`.
    #[test]
    fn workgroup_sizes_are_the_shaders() {
        for spec in &VARIANTS {
            let sources = [
                Some(&spec.linear),
                Some(&spec.attention),
                Some(&spec.layernorm),
                spec.layernorm_texels.as_ref(),
            ];
            for source in sources.into_iter().flatten() {
                let declared =
                    source.text.split("@workgroup_size(").nth(1).and_then(|rest| rest.split(')').next());
                let size = source.workgroup_size;
                match declared.map(|d| d.trim().parse::<u32>()) {
                    Some(Ok(literal)) => assert_eq!(literal, size, "{}", source.file),
                    _ => assert_eq!(size as usize, spec.linear_split.workgroup_size(), "{}", source.file),
                }
            }
            assert_eq!(
                spec.linear.workgroup_size as usize,
                spec.linear_split.workgroup_size(),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn linear_grids_cover_every_output() {
        for spec in &VARIANTS {
            for (t, n_in, n_out) in [(1, 1, 1), (279, 768, 2304), (33, 1025, 37), (600, 3, 7000)] {
                let grid = spec.linear_split.grid(t, n_in, n_out);
                let groups = grid.iter().map(|&g| g as usize).product::<usize>();
                let per_group = match spec.linear_split {
                    LinearSplit::PerOutput { outputs } => outputs,
                    LinearSplit::CpuTiles => 2 * CpuTile::for_n_in(n_in).token_pairs * CPU_OUTPUTS_PER_GROUP,
                    LinearSplit::Tiles { tile, .. } => tile * tile,
                };
                assert!(groups * per_group >= t * n_out, "{} {t}×{n_in}→{n_out}: {grid:?}", spec.name);
            }
        }
    }
}
