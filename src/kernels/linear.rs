use super::{groups_for, Kernels, LinearPipeline, Scratch, TexelLayout, Variant};
use crate::gpu::{grid_1d, Bind, Gpu, Recorder};
use anyhow::{bail, Result};

/// A linear layer's weights on the GPU, stored the way the variant reads them: HF's `[out, in]`
/// rows in a storage buffer (`simple`) or as a texel matrix, in rows (`texture`) or lane-packed
/// (`cpu`; see `TexelLayout`).
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

/// What a linear kernel does with `v = x · wᵀ + bias` (shaders/linear_output.wgsl). The optional
/// buffer of each epilogue receives `v` itself, for a hook that asks for it; without it the
/// kernel writes one output instead of two.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    /// `y = v`.
    Bias,
    /// `y = gelu_new(v)` (mlp.hook_post): c_fc with the activation fused in; `pre = v`
    /// (mlp.hook_pre).
    Gelu { pre: Option<&'a wgpu::Buffer> },
    /// `y = resid + v` (the new residual stream): a projection with the residual add fused in;
    /// `sublayer = v` (attn_out or mlp_out).
    Residual { resid: &'a wgpu::Buffer, sublayer: Option<&'a wgpu::Buffer> },
}

/// The values of the EPILOGUE pipeline constant of shaders/linear_output.wgsl.
pub(super) const EPILOGUE_BIAS: u32 = 0;
pub(super) const EPILOGUE_GELU: u32 = 1;
pub(super) const EPILOGUE_RESIDUAL: u32 = 2;

impl Epilogue<'_> {
    /// The pipeline constants of shaders/linear_output.wgsl for this epilogue: (EPILOGUE,
    /// WRITE_AUX).
    fn constants(&self) -> (u32, bool) {
        match self {
            Epilogue::Bias => (EPILOGUE_BIAS, false),
            Epilogue::Gelu { pre } => (EPILOGUE_GELU, pre.is_some()),
            Epilogue::Residual { sublayer, .. } => (EPILOGUE_RESIDUAL, sublayer.is_some()),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    n_in: u32,
    n_out: u32,
    _pad: u32,
}

/// Outputs per workgroup and tokens per workgroup of linear_texture.wgsl.
const TEXTURE_OUTPUTS_PER_GROUP: usize = 128;
const TEXTURE_TOKENS_PER_GROUP: usize = 8;
/// Outputs per workgroup of linear_cpu.wgsl (its tokens per workgroup: `CpuTile`).
const CPU_OUTPUTS_PER_GROUP: usize = 32;
/// The widest input that linear_cpu.wgsl runs in its tile for narrow inputs (`CpuTile::for_n_in`).
const CPU_NARROW_MAX_N_IN: usize = 1024;

/// How linear_cpu.wgsl splits a layer: 2 · `token_pairs` tokens per workgroup (its TOKEN_PAIRS),
/// and whether consecutive workgroups advance along the outputs (OUTPUTS_FIRST) or the tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct CpuTile {
    pub token_pairs: usize,
    pub outputs_first: bool,
}

impl CpuTile {
    /// Measured on lavapipe with the kernel's variants alternating in one process (README.md,
    /// "What limits the CPU driver"). Inputs up to 1024 wide (GPT-Neo-125M's qkv, out_proj and
    /// c_fc): 32 tokens, tokens first, so consecutive workgroups reuse the same 32 weight rows
    /// (32 tokens ran 3–8% faster than 16; outputs first 2–4% slower). Wider inputs (c_proj, 3072
    /// wide): 16 tokens, outputs first, so consecutive workgroups reuse the same 16 rows of x
    /// (192 KiB, where the 32 weight rows are 384 KiB): outputs first ran 6–16% faster, 32 tokens
    /// 8–10% slower.
    pub fn for_n_in(n_in: usize) -> CpuTile {
        if n_in <= CPU_NARROW_MAX_N_IN {
            CpuTile { token_pairs: 16, outputs_first: false }
        } else {
            CpuTile { token_pairs: 8, outputs_first: true }
        }
    }

    /// The dispatch grid over `n_tokens` tokens and `n_out` outputs.
    fn grid(self, n_tokens: usize, n_out: usize) -> [u32; 3] {
        let (tokens, outputs) =
            (groups_for(n_tokens, 2 * self.token_pairs), groups_for(n_out, CPU_OUTPUTS_PER_GROUP));
        if self.outputs_first {
            [outputs, tokens, 1]
        } else {
            [tokens, outputs, 1]
        }
    }
}

impl LinearPipeline {
    /// The pipeline `variant` runs a layer of `n_in` inputs and `n_out` outputs on, with the
    /// EPILOGUE and WRITE_AUX constants of its epilogue. linear_cpu.wgsl and linear_tiled.wgsl
    /// store four outputs at a time as one vec4 where rows are whole vec4s.
    pub(super) fn for_layer(
        variant: Variant,
        epilogue: u32,
        write_aux: bool,
        n_in: usize,
        n_out: usize,
    ) -> Self {
        LinearPipeline {
            epilogue,
            write_aux,
            vec4_rows: variant.stores_rows() && n_out % 4 == 0,
            cpu_tile: (variant == Variant::Cpu).then(|| CpuTile::for_n_in(n_in)),
        }
    }
}

/// Outputs (grid x) and tokens (grid y) per workgroup of linear_tiled.wgsl.
const TILED_TILE: usize = 32;

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
        let weight = match self.variant {
            Variant::Simple | Variant::Tiled => {
                let rows = gpu.storage(&format!("{label}.weight"), n_out * n_in)?;
                let mut offset = 0;
                for part in parts {
                    gpu.queue.write_buffer(&rows, offset, part);
                    offset += part.len() as u64;
                }
                Weight::Rows(rows)
            }
            Variant::Texture | Variant::Cpu => {
                let layout =
                    if self.variant == Variant::Cpu { TexelLayout::LanePacked } else { TexelLayout::Rows };
                let label = format!("{label}.weight texels");
                Weight::Texels(layout.upload(gpu, &label, parts, n_in)?)
            }
        };
        Ok(GpuLinear { n_in, n_out, weight, bias })
    }

    /// `y = x · wᵀ + bias` over `n_tokens` rows, then `epilogue` (shaders/linear.wgsl,
    /// linear_texture.wgsl, linear_cpu.wgsl or linear_tiled.wgsl, each ending with
    /// linear_output.wgsl). Fails only if the adapter rejects a pipeline this call is the first
    /// to need.
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        layer: &GpuLinear,
        y: &wgpu::Buffer,
        epilogue: Epilogue,
        n_tokens: usize,
        scratch: &Scratch,
    ) -> Result<()> {
        scratch.check(n_tokens, layer.n_in);
        let (aux_in, aux_out) = match epilogue {
            Epilogue::Bias | Epilogue::Gelu { pre: None } => (&self.placeholder, &self.placeholder_out),
            Epilogue::Gelu { pre: Some(pre) } => (&self.placeholder, pre),
            Epilogue::Residual { resid, sublayer } => (resid, sublayer.unwrap_or(&self.placeholder_out)),
        };
        let (code, write_aux) = epilogue.constants();
        let key = LinearPipeline::for_layer(self.variant, code, write_aux, layer.n_in, layer.n_out);
        let kernel = self.linear_pipeline(rec.gpu(), key)?;
        let params =
            Params { n_tokens: n_tokens as u32, n_in: layer.n_in as u32, n_out: layer.n_out as u32, _pad: 0 };
        let x: &dyn Bind = if self.variant.reads_texels() {
            self.texels_of(rec, x, n_tokens, layer.n_in, scratch)
        } else {
            x
        };
        let grid = match self.variant {
            Variant::Simple => grid_1d(groups_for(layer.n_out, 64) * n_tokens as u32),
            Variant::Texture => [
                groups_for(layer.n_out, TEXTURE_OUTPUTS_PER_GROUP),
                groups_for(n_tokens, TEXTURE_TOKENS_PER_GROUP),
                1,
            ],
            Variant::Cpu => CpuTile::for_n_in(layer.n_in).grid(n_tokens, layer.n_out),
            Variant::Tiled => [groups_for(layer.n_out, TILED_TILE), groups_for(n_tokens, TILED_TILE), 1],
        };
        let w: &dyn Bind = match &layer.weight {
            Weight::Rows(w) => w,
            Weight::Texels(w) => w,
        };
        rec.dispatch(&kernel, &params, &[x, w, &layer.bias, y, aux_in, aux_out], grid);
        Ok(())
    }
}
