use super::{groups_for, Kernels};
use crate::gpu::{grid_1d, Recorder};

/// The sizes of `y[n_tokens, n_out] = x[n_tokens, n_in] · w[n_out, n_in]ᵀ + bias[n_out]`.
#[derive(Clone, Copy, Debug)]
pub struct LinearShape {
    pub n_tokens: usize,
    pub n_in: usize,
    pub n_out: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    n_in: u32,
    n_out: u32,
    _pad: u32,
}

impl Kernels {
    /// `y = x · wᵀ + bias` with `w` in HF's `[out, in]` layout (shaders/linear.wgsl).
    pub fn linear(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        y: &wgpu::Buffer,
        shape: LinearShape,
    ) {
        let params = Params {
            n_tokens: shape.n_tokens as u32,
            n_in: shape.n_in as u32,
            n_out: shape.n_out as u32,
            _pad: 0,
        };
        let groups = groups_for(shape.n_out, 64) * shape.n_tokens as u32;
        rec.dispatch(&self.linear, &params, &[x, w, bias, y], grid_1d(groups));
    }
}
