use super::{Kernels, Scratch};
use crate::gpu::{grid_1d, Bind, Recorder};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    width: u32,
    eps: f32,
    _pad: u32,
}

impl Kernels {
    /// LayerNorm of each of the `n_tokens` rows of `x` into `y` (shaders/layernorm.wgsl; for
    /// `cpu`, layernorm_texels.wgsl reading `x` as texels where the width is a multiple of 4,
    /// else layernorm_cpu.wgsl; `scratch` must then hold `width`).
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        gamma: &wgpu::Buffer,
        beta: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n_tokens: usize,
        width: usize,
        eps: f32,
        scratch: &Scratch,
    ) {
        let params = Params { n_tokens: n_tokens as u32, width: width as u32, eps, _pad: 0 };
        let grid = grid_1d(n_tokens as u32);
        match &self.layernorm_texels {
            Some(kernel) if width % 4 == 0 => {
                scratch.check(n_tokens, width);
                let x = self.texels_of(rec, x, n_tokens, width, scratch);
                rec.dispatch(kernel, &params, &[x as &dyn Bind, gamma, beta, y], grid);
            }
            _ => rec.dispatch(&self.layernorm, &params, &[x, gamma, beta, y], grid),
        }
    }
}
