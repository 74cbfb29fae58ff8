use super::{groups_for, Kernels};
use crate::gpu::{grid_1d, Recorder};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    width: u32,
    _pad: [u32; 2],
}

impl Kernels {
    /// `hidden[t] = token_rows[t] + wpe[position[t]]` (shaders/embed.wgsl).
    #[allow(clippy::too_many_arguments)]
    pub fn embed(
        &self,
        rec: &mut Recorder,
        token_rows: &wgpu::Buffer,
        wpe: &wgpu::Buffer,
        position: &wgpu::Buffer,
        hidden: &wgpu::Buffer,
        n_tokens: usize,
        width: usize,
    ) {
        let params = Params { n_tokens: n_tokens as u32, width: width as u32, _pad: [0; 2] };
        let grid = grid_1d(groups_for(n_tokens * width, 256));
        rec.dispatch(&self.embed, &params, &[token_rows, wpe, position, hidden], grid);
    }
}
