use super::{Kernels, Rows};
use crate::gpu::{grid_1d, Bind, Gpu, Recorder, Work};
use anyhow::Result;

/// A LayerNorm's parameters on the GPU.
pub struct GpuLayerNorm {
    pub width: usize,
    pub eps: f32,
    gamma: wgpu::Buffer,
    beta: wgpu::Buffer,
}

impl GpuLayerNorm {
    /// Uploads γ and β (little-endian f32, `width` each).
    pub fn upload(gpu: &Gpu, label: &str, gamma: &[u8], beta: &[u8], eps: f32) -> Result<GpuLayerNorm> {
        Ok(GpuLayerNorm {
            width: gamma.len() / 4,
            eps,
            gamma: gpu.upload(&format!("{label}.weight"), gamma)?,
            beta: gpu.upload(&format!("{label}.bias"), beta)?,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    width: u32,
    eps: f32,
    _pad: u32,
}

impl Kernels {
    /// LayerNorm of each of the `rows.n_tokens` rows of `x` into `y` (the variant's layernorm
    /// kernel; where it has one that reads texels and the width is a multiple of 4, that one,
    /// with `x` copied into the scratch texture of its width).
    pub fn layernorm(
        &self,
        rec: &mut Recorder,
        ln: &GpuLayerNorm,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        rows: Rows,
    ) {
        let (n_tokens, width) = (rows.n_tokens, ln.width);
        let params = Params { n_tokens: n_tokens as u32, width: width as u32, eps: ln.eps, _pad: 0 };
        let grid = grid_1d(n_tokens as u32);
        rec.work(|| Work {
            flops: 8.0 * (n_tokens * width) as f64,
            bytes_read: 4.0 * (n_tokens * width + 2 * width) as f64,
            bytes_written: 4.0 * (n_tokens * width) as f64,
            shapes: format!("[{n_tokens}, {width}] → [{n_tokens}, {width}]"),
            ..Work::default()
        });
        match &self.layernorm_texels {
            Some(kernel) if width % 4 == 0 => {
                rows.scratch.check(n_tokens, width);
                let x = self.texels_of(rec, x, n_tokens, width, rows.scratch);
                rec.dispatch(kernel, &params, &[x as &dyn Bind, &ln.gamma, &ln.beta, y], grid);
            }
            _ => rec.dispatch(&self.layernorm, &params, &[x, &ln.gamma, &ln.beta, y], grid),
        }
    }
}
