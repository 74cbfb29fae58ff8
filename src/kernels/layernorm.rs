use super::Kernels;
use crate::gpu::{grid_1d, Recorder};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    width: u32,
    eps: f32,
    _pad: u32,
}

impl Kernels {
    /// LayerNorm of each of the `n_tokens` rows of `x` into `y` (shaders/layernorm.wgsl).
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
    ) {
        let params = Params { n_tokens: n_tokens as u32, width: width as u32, eps, _pad: 0 };
        rec.dispatch(&self.layernorm, &params, &[x, gamma, beta, y], grid_1d(n_tokens as u32));
    }
}
