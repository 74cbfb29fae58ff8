use super::variants::{CpuTile, LinearSplit, Operands, Source, VariantSpec};
use super::{compile, Kernels, Rows, TexelLayout};
use crate::gpu::{Bind, Gpu, Kernel, Recorder, Work};
use anyhow::{bail, Result};

/// A linear layer's weights on the GPU, stored the way the variant reads them: HF's `[out, in]`
/// rows in a storage buffer, or as a lane-packed texel matrix (see `TexelLayout`).
pub struct GpuLinear {
    pub n_in: usize,
    pub n_out: usize,
    weight: Weight,
    bias: wgpu::Buffer,
}

enum Weight {
    Rows(wgpu::Buffer),
    Texels(wgpu::TextureView),
}

/// What a linear kernel does with `v = x · wᵀ + bias` after computing it: the EPILOGUE pipeline
/// constant of shaders/epilogue.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fused {
    /// `y = v`.
    Nothing = 0,
    /// `y = gelu_new(v)`.
    Gelu = 1,
    /// `y = resid + v`.
    ResidualAdd = 2,
}

/// One call's epilogue with the buffers it reads and writes. The optional buffer of each receives
/// `v` itself, for a hook that asks for it; without it the kernel writes one output instead of
/// two.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    /// `y = v`.
    Bias,
    /// `y = gelu_new(v)` (c_fc with the activation fused in); `pre = v`.
    Gelu { pre: Option<&'a wgpu::Buffer> },
    /// `y = resid + v` (a projection with the residual add fused in); `sublayer = v`.
    Residual { resid: &'a wgpu::Buffer, sublayer: Option<&'a wgpu::Buffer> },
}

impl Epilogue<'_> {
    pub fn fused(&self) -> Fused {
        match self {
            Epilogue::Bias => Fused::Nothing,
            Epilogue::Gelu { .. } => Fused::Gelu,
            Epilogue::Residual { .. } => Fused::ResidualAdd,
        }
    }

    /// Whether the kernel also writes `v` (the WRITE_AUX pipeline constant).
    fn writes_v(&self) -> bool {
        matches!(self, Epilogue::Gelu { pre: Some(_) } | Epilogue::Residual { sublayer: Some(_), .. })
    }
}

/// A linear layer a model runs: its shape and epilogue (see `Shapes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearUse {
    pub fused: Fused,
    pub n_in: usize,
    pub n_out: usize,
}

/// One linear kernel call's operands.
struct LinearCall<'a> {
    layer: &'a GpuLinear,
    x: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    epilogue: Epilogue<'a>,
    rows: Rows<'a>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    n_in: u32,
    n_out: u32,
    _pad: u32,
}

/// What one linear pipeline is specialised for: the pipeline constants of
/// shaders/linear_output.wgsl (EPILOGUE and WRITE_AUX), for the kernels with row stores whether
/// they are vec4 stores, and for linear_cpu.wgsl its tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct LinearPipeline {
    fused: Fused,
    writes_v: bool,
    /// The RECORD_OWNER constant: stores record who stored each output instead of the output.
    record_owner: bool,
    row_stores: RowStores,
    cpu_tile: Option<CpuTile>,
}

/// Which `store_row` a kernel that stores four outputs at a time is compiled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RowStores {
    /// The kernel stores outputs one by one.
    None,
    /// shaders/linear_rows.wgsl: any n_out.
    Scalar,
    /// shaders/linear_rows_vec4.wgsl: n_out a multiple of 4, one vec4 access each.
    Vec4,
}

impl LinearPipeline {
    /// The pipeline `spec`'s linear kernel runs a layer of `n_in` inputs and `n_out` outputs on.
    pub(super) fn new(spec: &VariantSpec, fused: Fused, writes_v: bool, n_in: usize, n_out: usize) -> Self {
        let split = spec.linear_split;
        LinearPipeline {
            fused,
            writes_v,
            record_owner: false,
            row_stores: match (split.stores_rows(), n_out % 4 == 0) {
                (false, _) => RowStores::None,
                (true, false) => RowStores::Scalar,
                (true, true) => RowStores::Vec4,
            },
            cpu_tile: (split == LinearSplit::CpuTiles).then(|| CpuTile::for_n_in(n_in)),
        }
    }

    /// Compiles `linear` (the variant's kernel, ending with linear_output.wgsl) for this key,
    /// followed by the row stores it uses.
    pub(super) fn compile(self, gpu: &Gpu, linear: &Source, fault: f32) -> Result<Kernel> {
        let rows = match self.row_stores {
            RowStores::None => "",
            RowStores::Scalar => include_str!("../../shaders/linear_rows.wgsl"),
            RowStores::Vec4 => include_str!("../../shaders/linear_rows_vec4.wgsl"),
        };
        let mut constants = vec![
            ("EPILOGUE", self.fused as u32 as f64),
            ("WRITE_AUX", self.writes_v as u32 as f64),
            ("RECORD_OWNER", self.record_owner as u32 as f64),
            ("FAULT", fault as f64),
        ];
        let mut tile = Vec::new();
        if let Some(cpu_tile) = self.cpu_tile {
            tile.push(("TOKEN_PAIRS", cpu_tile.token_pairs));
            constants.push(("OUTPUTS_FIRST", cpu_tile.outputs_first as u32 as f64));
        }
        compile(gpu, linear, &format!("{}{rows}", linear.text), &tile, &constants)
    }
}

impl Kernels {
    /// Uploads a linear layer whose `[out, in]` weight is `parts` stacked row-wise (each part
    /// little-endian f32 rows of `n_in`), with `bias` (`None`: zero).
    pub fn upload_linear(
        &self,
        gpu: &Gpu,
        label: &str,
        parts: &[&[u8]],
        bias: Option<&[u8]>,
        n_in: usize,
    ) -> Result<GpuLinear> {
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        if n_in == 0 || parts.iter().any(|p| p.len() % (4 * n_in) != 0) || bytes == 0 {
            bail!("{label}: the weight parts are not whole rows of {n_in} f32 values");
        }
        let n_out = bytes / (4 * n_in);
        if bias.is_some_and(|b| b.len() != 4 * n_out) {
            bail!(
                "{label}: the bias has {} bytes, expected {} for {n_out} outputs",
                bias.map_or(0, <[u8]>::len),
                4 * n_out
            );
        }
        let bias = match bias {
            Some(bytes) => gpu.upload(&format!("{label}.bias"), bytes)?,
            None => gpu.upload(&format!("{label}.bias"), &vec![0u8; n_out * 4])?,
        };
        let weight = match self.spec.operands {
            Operands::Buffers => {
                let rows = gpu.storage(&format!("{label}.weight"), n_out * n_in)?;
                let mut offset = 0;
                for part in parts {
                    gpu.queue.write_buffer(&rows, offset, part);
                    offset += part.len() as u64;
                }
                Weight::Rows(rows)
            }
            Operands::Texels => {
                let label = format!("{label}.weight texels");
                Weight::Texels(TexelLayout::LanePacked.upload(gpu, &label, parts, n_in)?)
            }
        };
        Ok(GpuLinear { n_in, n_out, weight, bias })
    }

    /// `y = x · wᵀ + bias` over `rows.n_tokens` rows of `x`, then `epilogue` (the variant's
    /// linear kernel followed by shaders/linear_output.wgsl). Fails only if the adapter rejects a
    /// pipeline this call is the first to need.
    pub fn linear(
        &self,
        rec: &mut Recorder,
        layer: &GpuLinear,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        epilogue: Epilogue,
        rows: Rows,
    ) -> Result<()> {
        self.record_linear(rec, LinearCall { layer, x, y, epilogue, rows }, false)
    }

    /// Runs `layer` on `x` with the kernel recording who stores each output instead of storing
    /// it: `workgroups[t, n]` receives the workgroup (x + 65536 · y) and `invocations[t, n]` the
    /// invocation (local_invocation_index) that stored output (t, n), as u32 bits. This is how
    /// the geometry of `LinearSplit::owner` is checked against the kernel itself.
    pub fn linear_owners(
        &self,
        rec: &mut Recorder,
        layer: &GpuLinear,
        x: &wgpu::Buffer,
        workgroups: &wgpu::Buffer,
        invocations: &wgpu::Buffer,
        rows: Rows,
    ) -> Result<()> {
        let epilogue = Epilogue::Gelu { pre: Some(invocations) };
        self.record_linear(rec, LinearCall { layer, x, y: workgroups, epilogue, rows }, true)
    }

    fn record_linear(&self, rec: &mut Recorder, call: LinearCall, record_owner: bool) -> Result<()> {
        let LinearCall { layer, x, y, epilogue, rows } = call;
        let n_tokens = rows.n_tokens;
        rows.scratch.check(n_tokens, layer.n_in);
        let (aux_in, aux_out) = match epilogue {
            Epilogue::Bias | Epilogue::Gelu { pre: None } => (&self.placeholder, &self.placeholder_out),
            Epilogue::Gelu { pre: Some(pre) } => (&self.placeholder, pre),
            Epilogue::Residual { resid, sublayer } => (resid, sublayer.unwrap_or(&self.placeholder_out)),
        };
        let key = LinearPipeline {
            record_owner,
            ..LinearPipeline::new(self.spec, epilogue.fused(), epilogue.writes_v(), layer.n_in, layer.n_out)
        };
        let kernel = self.linear_pipeline(rec.gpu(), key)?;
        let params =
            Params { n_tokens: n_tokens as u32, n_in: layer.n_in as u32, n_out: layer.n_out as u32, _pad: 0 };
        let x: &dyn Bind = match self.spec.operands {
            Operands::Buffers => x,
            Operands::Texels => self.texels_of(rec, x, n_tokens, layer.n_in, rows.scratch),
        };
        let w: &dyn Bind = match &layer.weight {
            Weight::Rows(w) => w,
            Weight::Texels(w) => w,
        };
        let grid = self.spec.linear_split.grid(n_tokens, layer.n_in, layer.n_out);
        let (n_in, n_out) = (layer.n_in, layer.n_out);
        rec.work(|| Work {
            flops: 2.0 * (n_tokens * n_in * n_out) as f64,
            bytes_read: 4.0
                * (n_tokens * n_in
                    + n_out * n_in
                    + n_out
                    + if epilogue.fused() == Fused::ResidualAdd { n_tokens * n_out } else { 0 })
                    as f64,
            bytes_written: 4.0 * (n_tokens * n_out * if epilogue.writes_v() { 2 } else { 1 }) as f64,
            shapes: format!("x [{n_tokens}, {n_in}] · wᵀ [{n_in}, {n_out}] → [{n_tokens}, {n_out}]"),
            ..Work::default()
        });
        rec.dispatch(&kernel, &params, &[x, w, &layer.bias, y, aux_in, aux_out], grid);
        Ok(())
    }
}
