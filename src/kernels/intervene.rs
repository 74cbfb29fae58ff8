use super::variants::groups_for;
use super::Kernels;
use crate::gpu::{grid_1d, Recorder, Work};

/// An intervention's operands for one batch, on the GPU (shaders/intervene.wgsl).
pub struct GpuIntervention<'b> {
    /// The tokens of the batch it touches.
    pub rows: &'b wgpu::Buffer,
    pub n_rows: usize,
    /// The columns of `y` it touches (the hook's first column `col_base` included).
    pub cols: &'b wgpu::Buffer,
    pub n_cols: usize,
    /// Values: one row of the hook's width (`per_row` false), or one per touched token.
    pub source: &'b wgpu::Buffer,
    pub per_row: bool,
    pub keep: f32,
    pub scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_rows: u32,
    n_cols: u32,
    row_width: u32,
    col_base: u32,
    source_stride: u32,
    keep: f32,
    scale: f32,
    _pad: u32,
}

impl Kernels {
    /// `y[r, c] = keep · y[r, c] + scale · source[…]` in place over the chosen rows and columns of
    /// `y` (`[n_tokens, row_width]`), whose columns `col_base..col_base + width` are the hook.
    pub fn intervene(
        &self,
        rec: &mut Recorder,
        y: &wgpu::Buffer,
        row_width: usize,
        col_base: usize,
        width: usize,
        op: &GpuIntervention,
    ) {
        let (n_rows, n_cols) = (op.n_rows, op.n_cols);
        let params = Params {
            n_rows: n_rows as u32,
            n_cols: n_cols as u32,
            row_width: row_width as u32,
            col_base: col_base as u32,
            source_stride: if op.per_row { width as u32 } else { 0 },
            keep: op.keep,
            scale: op.scale,
            _pad: 0,
        };
        let grid = grid_1d(groups_for(n_rows * n_cols, 64));
        rec.work(|| Work {
            flops: 3.0 * (n_rows * n_cols) as f64,
            bytes_read: 4.0 * (2 * n_rows * n_cols + n_rows + n_cols) as f64,
            bytes_written: 4.0 * (n_rows * n_cols) as f64,
            shapes: format!("{n_rows} tokens × {n_cols} columns of [.., {row_width}], in place"),
            ..Work::default()
        });
        rec.dispatch(&self.intervene, &params, &[y, op.rows, op.cols, op.source], grid);
    }
}
