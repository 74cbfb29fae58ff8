use super::{groups_for, Kernels};
use crate::gpu::{grid_1d, Recorder};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

impl Kernels {
    /// `sum = a + b` over `n` elements (shaders/add.wgsl).
    pub fn add(&self, rec: &mut Recorder, a: &wgpu::Buffer, b: &wgpu::Buffer, sum: &wgpu::Buffer, n: usize) {
        let params = Params { n: n as u32, _pad: [0; 3] };
        rec.dispatch(&self.add, &params, &[a, b, sum], grid_1d(groups_for(n, 256)));
    }
}
