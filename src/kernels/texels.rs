use super::{groups_for, Kernels};
use crate::gpu::{grid_1d, Gpu, Recorder};
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_rows: u32,
    width: u32,
    layout: u32,
    _pad: u32,
}

/// How an `[n_rows, width]` f32 matrix is laid out as rgba32float texels, four consecutive
/// columns per texel (shaders/rows_to_texture.wgsl has the exact placement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TexelLayout {
    /// Texel i of row t at (i, t): activations, and the `texture` variant's weights.
    Rows,
    /// The `cpu` variant's weights: rows in groups of 32, the 8 lanes' texels side by side
    /// (shaders/linear_cpu.wgsl reads them as sequential streams).
    LanePacked,
}

/// Texels of a weight row per texture row in the lane-packed layout (PACKED_CHUNK in
/// shaders/rows_to_texture.wgsl and linear_cpu.wgsl): a multiple of 8, so a loop iteration's 8
/// texels never straddle two chunks, and a packed texture row (8 · 1024 texels) fits the 8192
/// texels every WebGPU adapter allows, whatever the row length.
const PACKED_CHUNK: usize = 1024;

impl TexelLayout {
    /// (texels wide, texels high) of the texture holding an `[n_rows, width]` matrix.
    pub fn extent(self, n_rows: usize, width: usize) -> (usize, usize) {
        let texels = width.div_ceil(4);
        match self {
            TexelLayout::Rows => (texels, n_rows),
            TexelLayout::LanePacked => {
                let chunks = texels.div_ceil(PACKED_CHUNK);
                (8 * texels.min(PACKED_CHUNK), 4 * n_rows.div_ceil(32) * chunks)
            }
        }
    }

    fn code(self) -> u32 {
        match self {
            TexelLayout::Rows => 0,
            TexelLayout::LanePacked => 1,
        }
    }
}

/// Textures a forward reuses for the operands the texel variants read as texels: one
/// `[n_tokens, width]` texel matrix per operand width. Empty for the `simple` variant.
pub struct Scratch {
    n_tokens: usize,
    widths: Vec<usize>,
    textures: Vec<(usize, wgpu::TextureView)>,
}

impl Scratch {
    /// Checks that a kernel call over `n_tokens` rows of `width` fits this scratch space (on every
    /// variant, so a caller's mistake shows whichever variant it is tested on).
    pub(super) fn check(&self, n_tokens: usize, width: usize) {
        assert!(
            n_tokens <= self.n_tokens && self.widths.contains(&width),
            "scratch made for {} tokens of widths {:?} used for {n_tokens} tokens of width {width}",
            self.n_tokens,
            self.widths
        );
    }

    fn view(&self, width: usize) -> &wgpu::TextureView {
        &self.textures.iter().find(|(w, _)| *w == width).expect("scratch texture for this width").1
    }
}

impl Kernels {
    /// Scratch space for a forward over `n_tokens` tokens whose texel operands have the given widths.
    pub fn scratch(&self, gpu: &Gpu, n_tokens: usize, widths: &[usize]) -> Result<Scratch> {
        let mut textures = Vec::new();
        if self.variant.reads_texels() {
            for &width in widths {
                if !textures.iter().any(|(w, _)| *w == width) {
                    let view = self.texel_matrix(
                        gpu,
                        &format!("scratch {width}"),
                        TexelLayout::Rows,
                        n_tokens,
                        width,
                    )?;
                    textures.push((width, view));
                }
            }
        }
        Ok(Scratch { n_tokens, widths: widths.to_vec(), textures })
    }

    /// Copies `m` (`[n_rows, width]`) into the scratch texel matrix of that width and returns it
    /// (shaders/rows_to_texture.wgsl).
    pub(super) fn texels_of<'s>(
        &self,
        rec: &mut Recorder,
        m: &wgpu::Buffer,
        n_rows: usize,
        width: usize,
        scratch: &'s Scratch,
    ) -> &'s wgpu::TextureView {
        let view = scratch.view(width);
        self.rows_to_texture(rec, m, view, TexelLayout::Rows, n_rows, width);
        view
    }

    /// An empty texel matrix for `[n_rows, width]` in `layout`.
    pub(super) fn texel_matrix(
        &self,
        gpu: &Gpu,
        label: &str,
        layout: TexelLayout,
        n_rows: usize,
        width: usize,
    ) -> Result<wgpu::TextureView> {
        let (wide, high) = layout.extent(n_rows, width);
        Ok(gpu.texel_texture(label, wide, high)?.create_view(&Default::default()))
    }

    /// Texel i of row t of `texels` (in `layout`) = `m[t, 4i..4i+4]` (shaders/rows_to_texture.wgsl).
    pub(super) fn rows_to_texture(
        &self,
        rec: &mut Recorder,
        m: &wgpu::Buffer,
        texels: &wgpu::TextureView,
        layout: TexelLayout,
        n_rows: usize,
        width: usize,
    ) {
        let params = Params { n_rows: n_rows as u32, width: width as u32, layout: layout.code(), _pad: 0 };
        let grid = grid_1d(groups_for(n_rows * width.div_ceil(4), 256));
        rec.dispatch(&self.rows_to_texture, &params, &[m, texels], grid);
    }
}
