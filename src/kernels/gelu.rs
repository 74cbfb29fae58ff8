use super::{groups_for, Kernels};
use crate::gpu::{grid_1d, Recorder};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

impl Kernels {
    /// `y = gelu_new(x)` over `n` elements (shaders/gelu_new.wgsl).
    pub fn gelu_new(&self, rec: &mut Recorder, x: &wgpu::Buffer, y: &wgpu::Buffer, n: usize) {
        let params = Params { n: n as u32, _pad: [0; 3] };
        rec.dispatch(&self.gelu, &params, &[x, y], grid_1d(groups_for(n, 256)));
    }
}
