use super::variants::{groups_for, Operands};
use super::Kernels;
use crate::gpu::{grid_1d, Gpu, Recorder};
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_rows: u32,
    width: u32,
    _pad: [u32; 2],
}

/// How an `[n_rows, width]` f32 matrix is laid out as rgba32float texels, four consecutive
/// columns per texel, each row k4 = ceil(width / 4) texels long (`position` places them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TexelLayout {
    /// Texel i of row t at (i, t): activations (shaders/rows_to_texture.wgsl or a plain copy).
    Rows,
    /// Weights of linear_cpu.wgsl. Rows are taken in groups of 32 (a
    /// workgroup's outputs), row n = 32 · g + 4 · l + o being output o of lane l; texel i of row
    /// n is at (8 · (i mod PACKED_CHUNK) + l, (4 · g + o) · chunks + i / PACKED_CHUNK), with
    /// chunks = ceil(k4 / PACKED_CHUNK). The 8 lanes' texels i of one o sit side by side, so a
    /// workgroup reads its weights as 4 sequential streams, and a row longer than PACKED_CHUNK
    /// texels continues on the next texture rows so the texture stays narrow.
    LanePacked,
}

/// Texels of a weight row per texture row in the lane-packed layout (PACKED_CHUNK in
/// shaders/linear_cpu.wgsl): a multiple of 8, so a loop iteration's 8 texels never straddle two
/// chunks, and a packed texture row (8 · 1024 texels) fits the 8192 texels every WebGPU adapter
/// allows, whatever the row length.
const PACKED_CHUNK: usize = 1024;

impl TexelLayout {
    /// (texels wide, texels high) of the texture holding an `[n_rows, width]` matrix.
    fn extent(self, n_rows: usize, width: usize) -> (usize, usize) {
        let texels = width.div_ceil(4);
        match self {
            TexelLayout::Rows => (texels, n_rows),
            TexelLayout::LanePacked => {
                let chunks = texels.div_ceil(PACKED_CHUNK);
                (8 * texels.min(PACKED_CHUNK), 4 * n_rows.div_ceil(32) * chunks)
            }
        }
    }

    /// Where texel `texel` of row `row` goes, as (x, y), in a matrix `texels_per_row` texels
    /// wide.
    fn position(self, row: usize, texel: usize, texels_per_row: usize) -> (usize, usize) {
        match self {
            TexelLayout::Rows => (texel, row),
            TexelLayout::LanePacked => {
                let chunks = texels_per_row.div_ceil(PACKED_CHUNK);
                let (group, lane, output) = (row / 32, row % 32 / 4, row % 4);
                (8 * (texel % PACKED_CHUNK) + lane, (4 * group + output) * chunks + texel / PACKED_CHUNK)
            }
        }
    }

    /// A texel matrix in this layout holding the rows of `parts` (stacked row-wise, each
    /// little-endian f32 rows of `width`), packed on the host and written straight into the
    /// texture: one layer's copy at a time, and no storage buffer or conversion pass on the device.
    pub(super) fn upload(
        self,
        gpu: &Gpu,
        label: &str,
        parts: &[&[u8]],
        width: usize,
    ) -> Result<wgpu::TextureView> {
        let row_bytes = 4 * width;
        let n_rows = parts.iter().map(|p| p.len()).sum::<usize>() / row_bytes;
        let texels_per_row = width.div_ceil(4);
        let (wide, high) = self.extent(n_rows, width);
        let mut packed = vec![0u8; wide * high * 16];
        let rows = parts.iter().flat_map(|part| part.chunks_exact(row_bytes));
        for (row, values) in rows.enumerate() {
            for (texel, bytes) in values.chunks(16).enumerate() {
                let (x, y) = self.position(row, texel, texels_per_row);
                let at = (y * wide + x) * 16;
                // A last texel past `width` keeps zeros in its missing columns.
                packed[at..at + bytes.len()].copy_from_slice(bytes);
            }
        }
        let texture = gpu.texel_texture(label, wide, high)?;
        gpu.queue.write_texture(
            texture.as_image_copy(),
            &packed,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(16 * wide as u32),
                rows_per_image: Some(high as u32),
            },
            texture.size(),
        );
        Ok(texture.create_view(&Default::default()))
    }
}

/// Textures a forward reuses for the operands the texel variants read as texels: one
/// `[n_tokens, width]` texel matrix per operand width. Empty for the variants that read storage
/// buffers.
pub struct Scratch {
    n_tokens: usize,
    widths: Vec<usize>,
    textures: Vec<(usize, wgpu::Texture, wgpu::TextureView)>,
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

    fn texture(&self, width: usize) -> (&wgpu::Texture, &wgpu::TextureView) {
        let (_, texture, view) =
            self.textures.iter().find(|(w, ..)| *w == width).expect("scratch texture for this width");
        (texture, view)
    }
}

impl Kernels {
    /// Scratch space for a forward over `n_tokens` tokens whose texel operands have the given widths.
    pub fn scratch(&self, gpu: &Gpu, n_tokens: usize, widths: &[usize]) -> Result<Scratch> {
        let mut textures: Vec<(usize, wgpu::Texture, wgpu::TextureView)> = Vec::new();
        if self.spec.operands == Operands::Texels {
            for &width in widths {
                if !textures.iter().any(|(w, ..)| *w == width) {
                    let (wide, high) = TexelLayout::Rows.extent(n_tokens, width);
                    let texture = gpu.texel_texture(&format!("scratch {width}"), wide, high)?;
                    let view = texture.create_view(&Default::default());
                    textures.push((width, texture, view));
                }
            }
        }
        Ok(Scratch { n_tokens, widths: widths.to_vec(), textures })
    }

    /// Copies `m` (`[n_rows, width]`) into the scratch texel matrix of that width and returns it.
    /// Where a row is whole texels and a multiple of the copy alignment (every width of GPT-Neo),
    /// `m`'s bytes already are the texel rows and a plain buffer-to-texture copy moves them, which
    /// on a CPU driver is a memcpy rather than lane-by-lane loads and stores; otherwise
    /// shaders/rows_to_texture.wgsl converts them.
    pub(super) fn texels_of<'s>(
        &self,
        rec: &mut Recorder,
        m: &wgpu::Buffer,
        n_rows: usize,
        width: usize,
        scratch: &'s Scratch,
    ) -> &'s wgpu::TextureView {
        let (texture, view) = scratch.texture(width);
        let row_bytes = 4 * width as u32;
        if width % 4 == 0 && row_bytes % wgpu::COPY_BYTES_PER_ROW_ALIGNMENT == 0 {
            rec.copy_to_texture(m, texture, width / 4, n_rows);
        } else {
            self.rows_to_texture(rec, m, view, n_rows, width);
        }
        view
    }

    /// `texels[t][i] = m[t, 4i..4i+4]`, in the rows layout (shaders/rows_to_texture.wgsl).
    fn rows_to_texture(
        &self,
        rec: &mut Recorder,
        m: &wgpu::Buffer,
        texels: &wgpu::TextureView,
        n_rows: usize,
        width: usize,
    ) {
        let params = Params { n_rows: n_rows as u32, width: width as u32, _pad: [0; 2] };
        let grid = grid_1d(groups_for(n_rows * width.div_ceil(4), 256));
        let kernel = self.rows_to_texture.as_ref().expect("texel variants compile rows_to_texture");
        rec.dispatch(kernel, &params, &[m, texels], grid);
    }
}
