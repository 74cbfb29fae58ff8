use super::variants::groups_for;
use super::Kernels;
use crate::gpu::{grid_1d, Gpu, Recorder, Work};
use anyhow::Result;

/// A table of position embeddings on the GPU: `[n_positions, width]`.
pub struct GpuPositions {
    pub width: usize,
    table: wgpu::Buffer,
}

impl GpuPositions {
    /// Uploads the table (little-endian f32 rows of `width`).
    pub fn upload(gpu: &Gpu, label: &str, table: &[u8], width: usize) -> Result<GpuPositions> {
        Ok(GpuPositions { width, table: gpu.upload(label, table)? })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    width: u32,
    _pad: [u32; 2],
}

impl Kernels {
    /// `hidden[t] = token_rows[t] + positions[position[t]]` over `n_tokens` rows
    /// (shaders/embed.wgsl).
    pub fn embed(
        &self,
        rec: &mut Recorder,
        positions: &GpuPositions,
        token_rows: &wgpu::Buffer,
        position: &wgpu::Buffer,
        hidden: &wgpu::Buffer,
        n_tokens: usize,
    ) {
        let width = positions.width;
        let params = Params { n_tokens: n_tokens as u32, width: width as u32, _pad: [0; 2] };
        let grid = grid_1d(groups_for(n_tokens * width, 256));
        rec.work(|| Work {
            flops: (n_tokens * width) as f64,
            bytes_read: 4.0 * (2 * n_tokens * width + n_tokens) as f64,
            bytes_written: 4.0 * (n_tokens * width) as f64,
            shapes: format!("token rows [{n_tokens}, {width}] + wpe rows → [{n_tokens}, {width}]"),
            ..Work::default()
        });
        rec.dispatch(&self.embed, &params, &[token_rows, &positions.table, position, hidden], grid);
    }
}
