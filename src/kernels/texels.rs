use super::{groups_for, Kernels};
use crate::gpu::{grid_1d, Gpu, Recorder};
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_rows: u32,
    width: u32,
    _pad: [u32; 2],
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
                    let texture = gpu.texel_matrix(&format!("scratch {width}"), n_tokens, width)?;
                    textures.push((width, texture.create_view(&Default::default())));
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
        self.rows_to_texture(rec, m, view, n_rows, width);
        view
    }

    /// `texels[t][i] = m[t, 4i..4i+4]` (shaders/rows_to_texture.wgsl).
    pub(super) fn rows_to_texture(
        &self,
        rec: &mut Recorder,
        m: &wgpu::Buffer,
        texels: &wgpu::TextureView,
        n_rows: usize,
        width: usize,
    ) {
        let params = Params { n_rows: n_rows as u32, width: width as u32, _pad: [0; 2] };
        let grid = grid_1d(groups_for(n_rows * width.div_ceil(4), 256));
        rec.dispatch(&self.rows_to_texture, &params, &[m, texels], grid);
    }
}
