use super::variants::{groups_for, Operands};
use super::{Kernels, Scratch};
use crate::gpu::{grid_1d, Bind, Recorder};
use anyhow::Result;

/// The sizes of one attention call over a packed batch.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub n_tokens: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    /// Keys a query may see on a local layer (itself included); `None` on a global layer.
    pub window: Option<usize>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    window: u32,
    width: u32,
    _pad: [u32; 3],
}

/// The widest head the kernels hold in registers.
pub const MAX_HEAD_DIM: usize = 128;

impl Kernels {
    /// Causal (optionally windowed) attention of the packed `qkv` rows into `z` (the variant's
    /// attention kernel followed by shaders/attention_keys.wgsl). `seq_start[t]` is the first
    /// token of t's sequence. Fails only if the adapter rejects a pipeline this call is the first
    /// to need.
    pub fn attention(
        &self,
        rec: &mut Recorder,
        qkv: &wgpu::Buffer,
        seq_start: &wgpu::Buffer,
        z: &wgpu::Buffer,
        shape: AttentionShape,
        scratch: &Scratch,
    ) -> Result<()> {
        assert!(shape.window != Some(0), "an attention window must hold at least the query itself");
        scratch.check(shape.n_tokens, 3 * shape.n_heads * shape.head_dim);
        assert!(
            shape.head_dim % 4 == 0 && shape.head_dim <= MAX_HEAD_DIM,
            "unsupported head_dim {}",
            shape.head_dim
        );
        let params = Params {
            n_tokens: shape.n_tokens as u32,
            n_heads: shape.n_heads as u32,
            head_dim: shape.head_dim as u32,
            window: shape.window.unwrap_or(0) as u32,
            width: (shape.n_heads * shape.head_dim) as u32,
            _pad: [0; 3],
        };
        let kernel = self.attention_pipeline(rec.gpu(), shape.head_dim)?;
        let qkv: &dyn Bind = match self.spec.operands {
            Operands::Buffers => qkv,
            Operands::Texels => self.texels_of(rec, qkv, shape.n_tokens, 3 * params.width as usize, scratch),
        };
        let grid = grid_1d(groups_for(shape.n_tokens * shape.n_heads, 64));
        rec.dispatch(&kernel, &params, &[qkv, seq_start, z], grid);
        Ok(())
    }
}
