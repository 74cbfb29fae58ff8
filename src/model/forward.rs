//! The GPT-Neo forward pass on the GPU, reading hook points back as it goes.
//!
//! ```text
//! h = wte[ids] + wpe[positions]
//! for each block:  h = h + attn(ln_1(h));  h = h + mlp(ln_2(h))      (mlp = c_proj ∘ gelu_new ∘ c_fc)
//! ln_f(h)
//! ```
//! GELU is fused into c_fc and each residual add into the projection before it (the linear
//! kernels' epilogues). The value before the fused step (mlp.hook_pre, attn_out, mlp_out) is
//! written as well only where the plan asks for that hook, so every hook point exists and no
//! other pass over memory is made. Every hook point the plan asks for is copied to a
//! host-readable buffer right after the kernel that produces it, and recording stops at the
//! deepest one: nothing after it is computed.

use super::{BlockWeights, GptNeoConfig, GptNeoWeights, Hook, HookPlan, HookPoint, HostTensor};
use crate::gpu::{Gpu, PassTime, Recorder};
use crate::kernels::{AttentionShape, Epilogue, GpuLinear, Kernels, Scratch};
use crate::model::Batch;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

struct GpuLayerNorm {
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
}

struct GpuBlock {
    ln_1: GpuLayerNorm,
    /// q, k and v projections stacked into one `[3·hidden, hidden]` weight (rows q, then k, then
    /// v) with a zero bias, so one linear produces the `[tokens, 3·hidden]` rows attention reads.
    qkv: GpuLinear,
    out_proj: GpuLinear,
    ln_2: GpuLayerNorm,
    c_fc: GpuLinear,
    c_proj: GpuLinear,
}

/// GPT-Neo weights uploaded to the GPU: the blocks up to the deepest hook, `wpe`, `ln_f` when all
/// blocks are there. `wte` stays on the host: a batch uploads only its tokens' rows.
pub struct GpuModel {
    pub config: GptNeoConfig,
    wte: HostTensor,
    wpe: wgpu::Buffer,
    blocks: Vec<GpuBlock>,
    ln_f: Option<GpuLayerNorm>,
}

/// Hook activations read back from a forward: each `[n_tokens, width]`, row-major.
pub struct Activations {
    pub n_tokens: usize,
    values: HashMap<Hook, Vec<f32>>,
}

impl Activations {
    pub fn get(&self, hook: Hook) -> Option<&[f32]> {
        self.values.get(&hook).map(Vec::as_slice)
    }

    pub fn take(&mut self, hook: Hook) -> Option<Vec<f32>> {
        self.values.remove(&hook)
    }
}

/// Where a forward's time went.
#[derive(Clone, Debug, Default)]
pub struct ForwardTimes {
    /// Recording, submitting and running every kernel (host wall time until the GPU is done).
    pub forward: Duration,
    /// The part of `forward` spent on the host until the last part is submitted: allocating the
    /// activation buffers, uploading the batch, recording the dispatches (on a GPU, blocks are
    /// submitted a few at a time and run meanwhile).
    pub record: Duration,
    /// Mapping the hook buffers and copying them out.
    pub readback: Duration,
    /// GPU time of each dispatch, when timing was asked for and the adapter has timestamps.
    pub passes: Vec<PassTime>,
}

impl GpuModel {
    /// Uploads `weights` (every block it holds) in the layout `kernels` read.
    pub fn upload(gpu: &Gpu, kernels: &Kernels, weights: &GptNeoWeights) -> Result<GpuModel> {
        let h = weights.config.hidden_size;
        let linear = |name: &str, w: &super::LinearWeights, n_in: usize| {
            kernels.upload_linear(gpu, name, &[w.weight.bytes()], Some(w.bias.bytes()), n_in)
        };
        let layernorm = |name: &str, w: &super::LayerNormWeights| -> Result<GpuLayerNorm> {
            Ok(GpuLayerNorm {
                weight: gpu.upload(&format!("{name}.weight"), w.weight.bytes())?,
                bias: gpu.upload(&format!("{name}.bias"), w.bias.bytes())?,
            })
        };
        let upload_block = |i: usize, b: &BlockWeights| -> Result<GpuBlock> {
            let qkv = [b.q_proj.bytes(), b.k_proj.bytes(), b.v_proj.bytes()];
            let block = GpuBlock {
                ln_1: layernorm(&format!("h.{i}.ln_1"), &b.ln_1)?,
                qkv: kernels.upload_linear(gpu, &format!("h.{i}.qkv"), &qkv, None, h)?,
                out_proj: linear(&format!("h.{i}.out_proj"), &b.out_proj, h)?,
                ln_2: layernorm(&format!("h.{i}.ln_2"), &b.ln_2)?,
                c_fc: linear(&format!("h.{i}.c_fc"), &b.c_fc, h)?,
                c_proj: linear(&format!("h.{i}.c_proj"), &b.c_proj, weights.config.intermediate_size)?,
            };
            // The block is on the GPU: neither the writes' staging copies nor its pages of the
            // mapped file need stay in memory.
            gpu.flush()?;
            b.release_pages();
            Ok(block)
        };
        let model = GpuModel {
            config: weights.config.clone(),
            wte: weights.wte.clone(),
            wpe: gpu.upload("wpe", weights.wpe.bytes()).inspect(|_| weights.wpe.release_pages())?,
            blocks: weights
                .blocks
                .iter()
                .enumerate()
                .map(|(i, b)| upload_block(i, b))
                .collect::<Result<_>>()?,
            ln_f: weights.ln_f.as_ref().map(|w| layernorm("ln_f", w)).transpose()?,
        };
        gpu.wait()?;
        Ok(model)
    }

    /// Runs `batch` up to the deepest hook of `plan` and reads back every hook it asks for.
    pub fn forward(
        &self,
        gpu: &Gpu,
        kernels: &Kernels,
        batch: &Batch,
        plan: &HookPlan,
        timed: bool,
    ) -> Result<(Activations, ForwardTimes)> {
        let config = &self.config;
        if plan.blocks_needed(config) > self.blocks.len()
            || (plan.wants(Hook::LnFinal) && self.ln_f.is_none())
        {
            bail!("hook {} needs weights that were not uploaded", plan.deepest());
        }
        if let Some(&id) = batch.ids.iter().find(|&&id| id as usize >= config.vocab_size) {
            bail!(
                "token id {id} is outside the model's vocabulary of {}: tokenizer.json does not belong to this model",
                config.vocab_size
            );
        }
        let started = Instant::now();
        let n = batch.n_tokens();
        let h = config.hidden_size;
        let inter = config.intermediate_size;
        let ids: Vec<usize> = batch.ids.iter().map(|&id| id as usize).collect();
        let token_rows = self.wte.gather_rows(&ids)?;
        let buffers = Buffers {
            token_rows: gpu.upload("token rows", &token_rows)?,
            positions: gpu.upload("positions", bytemuck::cast_slice(&batch.positions))?,
            seq_start: gpu.upload("sequence starts", bytemuck::cast_slice(&batch.seq_start))?,
            resid: gpu.storage("resid", n * h)?,
            resid_next: gpu.storage("resid next", n * h)?,
            normed: gpu.storage("normed", n * h)?,
            qkv: gpu.storage("qkv", n * 3 * h)?,
            z: gpu.storage("z", n * h)?,
            attn_out: gpu.storage("attn_out", n * h)?,
            resid_mid: gpu.storage("resid_mid", n * h)?,
            mlp_pre: gpu.storage("mlp_pre", n * inter)?,
            mlp_post: gpu.storage("mlp_post", n * inter)?,
            mlp_out: gpu.storage("mlp_out", n * h)?,
            scratch: kernels.scratch(gpu, n, &[h, 3 * h, inter])?,
        };
        let mut pass = ForwardPass {
            kernels,
            model: self,
            n_tokens: n,
            buffers,
            taps: Taps { plan, staged: Vec::new() },
            rec: Recorder::new(gpu, timed),
            submit_in_parts: gpu.info.device_type != wgpu::DeviceType::Cpu,
            error: None,
        };
        let _ = pass.record();
        let ForwardPass { taps, rec, error, .. } = pass;
        if let Some(error) = error {
            return Err(error);
        }
        let record = started.elapsed();
        let passes = rec.finish()?;
        let forward = started.elapsed();

        let started = Instant::now();
        let staging: Vec<&wgpu::Buffer> = taps.staged.iter().map(|s| &s.buffer).collect();
        let mut values = HashMap::new();
        for (staged, rows) in taps.staged.iter().zip(gpu.read_staging(&staging)?) {
            values.insert(staged.hook, staged.columns.select(&rows));
        }
        let readback = started.elapsed();
        Ok((Activations { n_tokens: n, values }, ForwardTimes { forward, record, readback, passes }))
    }
}

/// How many blocks a forward on a GPU records before submitting them, so that the GPU runs them
/// while the next are recorded. Measured on an NVIDIA H200 (`tiled`, the challenge batch, medians
/// of 60 forwards): 3.44 ms submitting every block, 3.32 ms every 3 blocks, 3.71 ms submitting
/// once at the end (each submission costs about 60 µs of host time there). On a CPU driver a
/// submission runs its work before it returns, so there is nothing to overlap and the forward is
/// submitted once (lavapipe, the full-shape model, alternating in one process: 1.34–1.54 s in
/// parts against 1.20–1.47 s at once).
const SUBMIT_EVERY_BLOCKS: usize = 3;

/// The activation buffers of one forward, reused by every block.
struct Buffers {
    token_rows: wgpu::Buffer,
    positions: wgpu::Buffer,
    seq_start: wgpu::Buffer,
    resid: wgpu::Buffer,
    resid_next: wgpu::Buffer,
    normed: wgpu::Buffer,
    qkv: wgpu::Buffer,
    z: wgpu::Buffer,
    attn_out: wgpu::Buffer,
    resid_mid: wgpu::Buffer,
    mlp_pre: wgpu::Buffer,
    mlp_post: wgpu::Buffer,
    mlp_out: wgpu::Buffer,
    scratch: Scratch,
}

struct ForwardPass<'a> {
    kernels: &'a Kernels,
    model: &'a GpuModel,
    n_tokens: usize,
    buffers: Buffers,
    taps: Taps<'a>,
    rec: Recorder<'a>,
    /// Whether to submit every SUBMIT_EVERY_BLOCKS blocks (on GPUs) rather than once.
    submit_in_parts: bool,
    /// Why recording stopped early, when it was not the deepest hook (a pipeline the adapter
    /// rejected).
    error: Option<anyhow::Error>,
}

impl ForwardPass<'_> {
    /// Records the forward; `Break` once the deepest requested hook has been captured.
    fn record(&mut self) -> ControlFlow<()> {
        let (n, config) = (self.n_tokens, &self.model.config);
        let b = &self.buffers;
        self.kernels.embed(
            &mut self.rec,
            &b.token_rows,
            &self.model.wpe,
            &b.positions,
            &b.resid,
            n,
            config.hidden_size,
        );
        for layer in 0..self.model.blocks.len() {
            self.record_block(layer)?;
            if self.submit_in_parts && (layer + 1) % SUBMIT_EVERY_BLOCKS == 0 {
                self.rec.submit_so_far();
            }
            std::mem::swap(&mut self.buffers.resid, &mut self.buffers.resid_next);
        }
        if let Some(ln_f) = &self.model.ln_f {
            let b = &self.buffers;
            let (h, eps) = (config.hidden_size, config.layer_norm_epsilon);
            let (rec, scratch) = (&mut self.rec, &b.scratch);
            self.kernels.layernorm(rec, &b.resid, &ln_f.weight, &ln_f.bias, &b.normed, n, h, eps, scratch);
            self.taps.tap(&mut self.rec, Hook::LnFinal, &b.normed, Columns::all(n, h))?;
        }
        ControlFlow::Continue(())
    }

    fn record_block(&mut self, layer: usize) -> ControlFlow<()> {
        let config = &self.model.config;
        let block = &self.model.blocks[layer];
        let (k, b, rec, taps) = (self.kernels, &self.buffers, &mut self.rec, &mut self.taps);
        let (n, h, inter, eps) =
            (self.n_tokens, config.hidden_size, config.intermediate_size, config.layer_norm_epsilon);
        let hook = |point| Hook::block(layer, point);
        let all = |width| Columns::all(n, width);
        let plan = taps.plan;
        // The buffer for a fused epilogue's value before its last step, where the plan asks for it.
        let if_hooked = |point, buffer| plan.wants(hook(point)).then_some(buffer);
        let error = &mut self.error;
        let mut linear = |rec: &mut Recorder, x, layer, y, epilogue| match k
            .linear(rec, x, layer, y, epilogue, n, &b.scratch)
        {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                *error = Some(e);
                ControlFlow::Break(())
            }
        };

        taps.tap(rec, hook(HookPoint::ResidPre), &b.resid, all(h))?;
        k.layernorm(rec, &b.resid, &block.ln_1.weight, &block.ln_1.bias, &b.normed, n, h, eps, &b.scratch);
        taps.tap(rec, hook(HookPoint::Ln1Normalized), &b.normed, all(h))?;
        linear(rec, &b.normed, &block.qkv, &b.qkv, Epilogue::Bias)?;
        for (part, point) in [HookPoint::AttnQ, HookPoint::AttnK, HookPoint::AttnV].into_iter().enumerate() {
            let columns = Columns { n_tokens: n, row_width: 3 * h, start: part * h, width: h };
            taps.tap(rec, hook(point), &b.qkv, columns)?;
        }
        let shape = AttentionShape {
            n_tokens: n,
            n_heads: config.num_heads,
            head_dim: config.head_dim(),
            window: config.window(layer),
        };
        k.attention(rec, &b.qkv, &b.seq_start, &b.z, shape, &b.scratch);
        taps.tap(rec, hook(HookPoint::AttnZ), &b.z, all(h))?;
        let sublayer = if_hooked(HookPoint::AttnOut, &b.attn_out);
        linear(rec, &b.z, &block.out_proj, &b.resid_mid, Epilogue::Residual { resid: &b.resid, sublayer })?;
        taps.tap(rec, hook(HookPoint::AttnOut), &b.attn_out, all(h))?;
        taps.tap(rec, hook(HookPoint::ResidMid), &b.resid_mid, all(h))?;
        let ln_2 = &block.ln_2;
        k.layernorm(rec, &b.resid_mid, &ln_2.weight, &ln_2.bias, &b.normed, n, h, eps, &b.scratch);
        taps.tap(rec, hook(HookPoint::Ln2Normalized), &b.normed, all(h))?;
        let pre = if_hooked(HookPoint::MlpPre, &b.mlp_pre);
        linear(rec, &b.normed, &block.c_fc, &b.mlp_post, Epilogue::Gelu { pre })?;
        taps.tap(rec, hook(HookPoint::MlpPre), &b.mlp_pre, all(inter))?;
        taps.tap(rec, hook(HookPoint::MlpPost), &b.mlp_post, all(inter))?;
        let sublayer = if_hooked(HookPoint::MlpOut, &b.mlp_out);
        linear(
            rec,
            &b.mlp_post,
            &block.c_proj,
            &b.resid_next,
            Epilogue::Residual { resid: &b.resid_mid, sublayer },
        )?;
        taps.tap(rec, hook(HookPoint::MlpOut), &b.mlp_out, all(h))?;
        taps.tap(rec, hook(HookPoint::ResidPost), &b.resid_next, all(h))?;
        ControlFlow::Continue(())
    }
}

/// Which columns of a `[n_tokens, row_width]` buffer a hook is.
#[derive(Clone, Copy)]
struct Columns {
    n_tokens: usize,
    row_width: usize,
    start: usize,
    width: usize,
}

impl Columns {
    fn all(n_tokens: usize, width: usize) -> Columns {
        Columns { n_tokens, row_width: width, start: 0, width }
    }

    fn select(&self, rows: &[f32]) -> Vec<f32> {
        if self.start == 0 && self.width == self.row_width {
            return rows[..self.n_tokens * self.width].to_vec();
        }
        rows.chunks_exact(self.row_width)
            .take(self.n_tokens)
            .flat_map(|row| &row[self.start..self.start + self.width])
            .copied()
            .collect()
    }
}

struct Staged {
    hook: Hook,
    buffer: wgpu::Buffer,
    columns: Columns,
}

/// The hook buffers being copied out during a forward.
struct Taps<'p> {
    plan: &'p HookPlan,
    staged: Vec<Staged>,
}

impl Taps<'_> {
    /// Copies `buffer` out if `hook` is requested; `Break` when `hook` is the deepest requested.
    fn tap(
        &mut self,
        rec: &mut Recorder,
        hook: Hook,
        buffer: &wgpu::Buffer,
        columns: Columns,
    ) -> ControlFlow<()> {
        if self.plan.wants(hook) {
            let bytes = (columns.n_tokens * columns.row_width * 4) as u64;
            let staging = rec.gpu().staging(&hook.to_string(), bytes);
            rec.copy(buffer, &staging, bytes);
            self.staged.push(Staged { hook, buffer: staging, columns });
        }
        if hook == self.plan.deepest() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}
