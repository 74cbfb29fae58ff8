//! The GPT-Neo forward pass on the GPU, reading hook points back as it goes. Each layer is a value
//! that records its kernels, in the order of HF's modules (`modeling_gpt_neo.py`):
//!
//! ```text
//! GPTNeoModel:  h = wte[ids] + wpe[positions];  for each block: h = block(h);  ln_f(h)
//! GPTNeoBlock:  h = h + attn(ln_1(h));  h = h + mlp(ln_2(h))
//! GPTNeoMLP:    c_proj(gelu_new(c_fc(x)))
//! ```
//!
//! GELU is fused into c_fc and each residual add into the projection before it (the linear
//! kernels' epilogues). The value before the fused step (mlp.hook_pre, attn_out, mlp_out) is
//! written as well only where a hook asks for it. Every requested hook is copied to a
//! host-readable buffer right after the kernel that produces it, and recording stops at the
//! deepest one: nothing after it is computed.

use super::{BlockWeights, GptNeoConfig, GptNeoWeights, Hook, HookPlan, HookPoint, HostTensor};
use crate::gpu::{Gpu, PassTime, Recorder, Trace, Work};
use crate::kernels::{
    AttentionShape, Epilogue, Fused, GpuLayerNorm, GpuLinear, GpuPositions, Kernels, LinearUse, Rows, Shapes,
};
use crate::model::Batch;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// GPT-Neo weights uploaded to the GPU: the blocks up to the deepest hook, `wpe`, `ln_f` when all
/// blocks are there. `wte` stays on the host: a batch uploads only its tokens' rows.
pub struct GpuModel {
    pub config: GptNeoConfig,
    wte: HostTensor,
    wpe: GpuPositions,
    blocks: Vec<Block>,
    ln_f: Option<Named<GpuLayerNorm>>,
}

/// A layer on the GPU with the name of its HF module (`h.8.mlp.c_fc`), which traces show.
struct Named<T> {
    name: String,
    layer: T,
}

/// HF's GPTNeoBlock.
struct Block {
    layer: usize,
    ln_1: Named<GpuLayerNorm>,
    attn: Attention,
    ln_2: Named<GpuLayerNorm>,
    mlp: Mlp,
}

/// HF's GPTNeoSelfAttention, with q, k and v stacked into one `[3·hidden, hidden]` linear (rows
/// q, then k, then v; no bias) so one kernel produces the `[tokens, 3·hidden]` rows attention reads.
struct Attention {
    layer: usize,
    name: String,
    qkv: Named<GpuLinear>,
    n_heads: usize,
    head_dim: usize,
    /// Keys a query sees on a local layer; `None` on a global one.
    window: Option<usize>,
    out_proj: Named<GpuLinear>,
}

/// HF's GPTNeoMLP.
struct Mlp {
    layer: usize,
    c_fc: Named<GpuLinear>,
    c_proj: Named<GpuLinear>,
}

/// The pipelines a forward of `config` runs, compiled before its first forward.
pub fn kernel_shapes(config: &GptNeoConfig) -> Shapes {
    let (h, inter) = (config.hidden_size, config.intermediate_size);
    let linear = |fused, n_in, n_out| LinearUse { fused, n_in, n_out };
    Shapes {
        linears: vec![
            linear(Fused::Nothing, h, 3 * h),
            linear(Fused::ResidualAdd, h, h),
            linear(Fused::Gelu, h, inter),
            linear(Fused::ResidualAdd, inter, h),
        ],
        head_dims: vec![config.head_dim()],
    }
}

impl GpuModel {
    /// Uploads `weights` (every block it holds) in the layout `kernels` read.
    pub fn upload(gpu: &Gpu, kernels: &Kernels, weights: &GptNeoWeights) -> Result<GpuModel> {
        let config = &weights.config;
        let eps = config.layer_norm_epsilon;
        let layernorm = |name: String, w: &super::LayerNormWeights| {
            let layer = GpuLayerNorm::upload(gpu, &name, w.weight.bytes(), w.bias.bytes(), eps)?;
            Ok::<_, anyhow::Error>(Named { name, layer })
        };
        let linear = |name: String, w: &super::LinearWeights, n_in: usize| {
            let layer = kernels.upload_linear(gpu, &name, &[w.weight.bytes()], Some(w.bias.bytes()), n_in)?;
            Ok::<_, anyhow::Error>(Named { name, layer })
        };
        let upload_block = |layer: usize, b: &BlockWeights| -> Result<Block> {
            let (h, name) = (config.hidden_size, format!("h.{layer}"));
            let qkv = [b.q_proj.bytes(), b.k_proj.bytes(), b.v_proj.bytes()];
            let qkv_name = format!("{name}.attn.q_proj+k_proj+v_proj");
            let block = Block {
                layer,
                ln_1: layernorm(format!("{name}.ln_1"), &b.ln_1)?,
                attn: Attention {
                    layer,
                    name: format!("{name}.attn"),
                    qkv: Named {
                        layer: kernels.upload_linear(gpu, &qkv_name, &qkv, None, h)?,
                        name: qkv_name,
                    },
                    n_heads: config.num_heads,
                    head_dim: config.head_dim(),
                    window: config.window(layer),
                    out_proj: linear(format!("{name}.attn.out_proj"), &b.out_proj, h)?,
                },
                ln_2: layernorm(format!("{name}.ln_2"), &b.ln_2)?,
                mlp: Mlp {
                    layer,
                    c_fc: linear(format!("{name}.mlp.c_fc"), &b.c_fc, h)?,
                    c_proj: linear(format!("{name}.mlp.c_proj"), &b.c_proj, config.intermediate_size)?,
                },
            };
            // The block is on the GPU: neither the writes' staging copies nor its pages of the
            // mapped file need stay in memory.
            gpu.flush()?;
            b.release_pages();
            Ok(block)
        };
        let wpe = GpuPositions::upload(gpu, "wpe", weights.wpe.bytes(), config.hidden_size)?;
        weights.wpe.release_pages();
        let model = GpuModel {
            config: config.clone(),
            wte: weights.wte.clone(),
            wpe,
            blocks: weights
                .blocks
                .iter()
                .enumerate()
                .map(|(i, b)| upload_block(i, b))
                .collect::<Result<_>>()?,
            ln_f: weights.ln_f.as_ref().map(|w| layernorm("ln_f".to_string(), w)).transpose()?,
        };
        gpu.wait()?;
        Ok(model)
    }

    /// Runs `batch` up to the deepest hook of `plan` and reads back every hook it asks for; with
    /// `timed`, every dispatch is timed on the GPU where the adapter has timestamps.
    pub fn forward(
        &self,
        gpu: &Gpu,
        kernels: &Kernels,
        batch: &Batch,
        plan: &HookPlan,
        timed: bool,
    ) -> Result<(Activations, ForwardTimes)> {
        let (acts, mut times, passes) =
            self.run(gpu, kernels, batch, plan, Recorder::new(gpu, timed), Recorder::finish)?;
        times.passes = passes;
        Ok((acts, times))
    }

    /// The forward with every dispatch traced: what it computes and how long it took.
    pub fn forward_traced(
        &self,
        gpu: &Gpu,
        kernels: &Kernels,
        batch: &Batch,
        plan: &HookPlan,
    ) -> Result<(Activations, Trace)> {
        let (acts, _, trace) =
            self.run(gpu, kernels, batch, plan, Recorder::traced(gpu), Recorder::finish_traced)?;
        Ok((acts, trace))
    }

    fn run<'g, T>(
        &self,
        gpu: &'g Gpu,
        kernels: &Kernels,
        batch: &Batch,
        plan: &HookPlan,
        rec: Recorder<'g>,
        finish: impl FnOnce(Recorder<'g>) -> Result<T>,
    ) -> Result<(Activations, ForwardTimes, T)> {
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
        let n_tokens = batch.n_tokens();
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let ids: Vec<usize> = batch.ids.iter().map(|&id| id as usize).collect();
        let mut buffers = Buffers::new(gpu, batch, &self.wte.gather_rows(&ids)?, h, inter)?;
        let scratch = kernels.scratch(gpu, n_tokens, &[h, 3 * h, inter])?;
        let mut f = Recording {
            kernels,
            rec,
            rows: Rows { n_tokens, scratch: &scratch },
            taps: Taps { plan, staged: Vec::new() },
            batch,
        };
        match self.record(&mut f, &mut buffers) {
            Ok(()) | Err(Stop::Reached) => {}
            Err(Stop::Failed(error)) => return Err(error),
        }
        let Recording { taps, rec, .. } = f;
        let record = started.elapsed();
        let finished = finish(rec)?;
        let forward = started.elapsed();

        let started = Instant::now();
        let staging: Vec<&wgpu::Buffer> = taps.staged.iter().map(|s| &s.buffer).collect();
        let mut values = HashMap::new();
        for (staged, rows) in taps.staged.iter().zip(gpu.read_staging(&staging)?) {
            values.insert(staged.hook, staged.columns.select(&rows));
        }
        let readback = started.elapsed();
        let times = ForwardTimes { forward, record, readback, passes: Vec::new() };
        Ok((Activations { n_tokens, values }, times, finished))
    }

    /// HF's GPTNeoModel.forward: the embeddings, every block, ln_f.
    fn record(&self, f: &mut Recording, a: &mut Buffers) -> Step {
        f.rec.module(|| "wte+wpe".to_string());
        f.kernels.embed(&mut f.rec, &self.wpe, &a.token_rows, &a.positions, &a.resid, f.rows.n_tokens);
        for block in &self.blocks {
            block.record(f, a)?;
            f.block_recorded(block.layer);
            std::mem::swap(&mut a.resid, &mut a.resid_next);
        }
        if let Some(ln_f) = &self.ln_f {
            f.layernorm(ln_f, &a.resid, Out::new(&a.normed, Hook::LnFinal))?;
        }
        Ok(())
    }
}

impl Block {
    /// HF's GPTNeoBlock.forward: `h = h + attn(ln_1(h));  h = h + mlp(ln_2(h))`, each residual
    /// add fused into the projection before it. Reads `a.resid`, leaves the block's output in
    /// `a.resid_next`.
    fn record(&self, f: &mut Recording, a: &Buffers) -> Step {
        let at = |point| Hook::block(self.layer, point);
        f.tap(Out::new(&a.resid, at(HookPoint::ResidPre)))?;
        f.layernorm(&self.ln_1, &a.resid, Out::new(&a.normed, at(HookPoint::Ln1Normalized)))?;
        self.attn.record(f, a, &a.normed, &a.resid, Out::new(&a.resid_mid, at(HookPoint::ResidMid)))?;
        f.layernorm(&self.ln_2, &a.resid_mid, Out::new(&a.normed, at(HookPoint::Ln2Normalized)))?;
        self.mlp.record(f, a, &a.normed, &a.resid_mid, Out::new(&a.resid_next, at(HookPoint::ResidPost)))
    }
}

impl Attention {
    /// `resid + out_proj(attention(q, k, v))` with q, k, v projected from `x`: HF's
    /// GPTNeoSelfAttention.forward (scores unscaled, causal, windowed on local layers).
    fn record(
        &self,
        f: &mut Recording,
        a: &Buffers,
        x: &wgpu::Buffer,
        resid: &wgpu::Buffer,
        out: Out,
    ) -> Step {
        let at = |point| Hook::block(self.layer, point);
        f.linear(&self.qkv, x, Then::Nothing, Out::untapped(&a.qkv))?;
        for (part, point) in [HookPoint::AttnQ, HookPoint::AttnK, HookPoint::AttnV].into_iter().enumerate() {
            f.tap(Out::columns(&a.qkv, at(point), part, 3))?;
        }
        f.attention(self, &a.qkv, &a.seq_start, Out::new(&a.z, at(HookPoint::AttnZ)))?;
        let sublayer = Out::new(&a.attn_out, at(HookPoint::AttnOut));
        f.linear(&self.out_proj, &a.z, Then::AddTo { resid, sublayer }, out)
    }
}

impl Mlp {
    /// `resid + c_proj(gelu_new(c_fc(x)))`: HF's GPTNeoMLP.forward, GELU fused into c_fc.
    fn record(
        &self,
        f: &mut Recording,
        a: &Buffers,
        x: &wgpu::Buffer,
        resid: &wgpu::Buffer,
        out: Out,
    ) -> Step {
        let at = |point| Hook::block(self.layer, point);
        let pre = Out::new(&a.mlp_pre, at(HookPoint::MlpPre));
        f.linear(&self.c_fc, x, Then::Gelu { pre }, Out::new(&a.mlp_post, at(HookPoint::MlpPost)))?;
        let sublayer = Out::new(&a.mlp_out, at(HookPoint::MlpOut));
        f.linear(&self.c_proj, &a.mlp_post, Then::AddTo { resid, sublayer }, out)
    }
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

/// How many blocks a forward on a GPU records before submitting them, so that the GPU runs them
/// while the next are recorded; the count that measured fastest (docs/kernels.md). A CPU driver
/// runs a submission's work before it returns, so there the forward is submitted once.
const SUBMIT_EVERY_BLOCKS: usize = 3;

/// The activation buffers of one forward, reused by every block.
struct Buffers {
    token_rows: wgpu::Buffer,
    positions: wgpu::Buffer,
    seq_start: wgpu::Buffer,
    /// The residual stream entering the block, and leaving it (swapped after each block).
    resid: wgpu::Buffer,
    resid_next: wgpu::Buffer,
    /// ln_1's and then ln_2's output.
    normed: wgpu::Buffer,
    qkv: wgpu::Buffer,
    z: wgpu::Buffer,
    attn_out: wgpu::Buffer,
    resid_mid: wgpu::Buffer,
    mlp_pre: wgpu::Buffer,
    mlp_post: wgpu::Buffer,
    mlp_out: wgpu::Buffer,
}

impl Buffers {
    fn new(gpu: &Gpu, batch: &Batch, token_rows: &[u8], h: usize, inter: usize) -> Result<Buffers> {
        let n = batch.n_tokens();
        Ok(Buffers {
            token_rows: gpu.upload("token rows", token_rows)?,
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
        })
    }
}

/// Why recording stopped before the end: the deepest requested hook was reached (nothing after
/// it is needed), or the adapter rejected a pipeline.
enum Stop {
    Reached,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(error: anyhow::Error) -> Stop {
        Stop::Failed(error)
    }
}

/// The result of recording a step of the forward.
type Step = std::result::Result<(), Stop>;

/// A kernel's output buffer, and the hook it is (if any) with the columns of the buffer the hook
/// takes.
#[derive(Clone, Copy)]
struct Out<'b> {
    buffer: &'b wgpu::Buffer,
    hook: Option<Hook>,
    /// Part `part` of `parts` equal column blocks of each row (q, k or v of the qkv rows).
    part: (usize, usize),
}

impl<'b> Out<'b> {
    fn new(buffer: &'b wgpu::Buffer, hook: Hook) -> Self {
        Out { buffer, hook: Some(hook), part: (0, 1) }
    }

    fn untapped(buffer: &'b wgpu::Buffer) -> Self {
        Out { buffer, hook: None, part: (0, 1) }
    }

    fn columns(buffer: &'b wgpu::Buffer, hook: Hook, part: usize, parts: usize) -> Self {
        Out { buffer, hook: Some(hook), part: (part, parts) }
    }
}

/// What a linear kernel does after `v = x · wᵀ + bias`, with where `v` itself goes when a hook
/// asks for it.
enum Then<'b> {
    Nothing,
    Gelu { pre: Out<'b> },
    AddTo { resid: &'b wgpu::Buffer, sublayer: Out<'b> },
}

/// A forward being recorded: the kernels, the recording, the batch's rows and the hook taps.
struct Recording<'a, 'g> {
    kernels: &'a Kernels,
    rec: Recorder<'g>,
    rows: Rows<'a>,
    taps: Taps<'a>,
    batch: &'a Batch,
}

impl Recording<'_, '_> {
    fn layernorm(&mut self, ln: &Named<GpuLayerNorm>, x: &wgpu::Buffer, y: Out) -> Step {
        self.rec.module(|| ln.name.clone());
        self.kernels.layernorm(&mut self.rec, &ln.layer, x, y.buffer, self.rows);
        self.tap(y)
    }

    /// `layer` on `x` into `y`, then `then`; taps `v` (where `then` keeps it) and `y`.
    fn linear(&mut self, layer: &Named<GpuLinear>, x: &wgpu::Buffer, then: Then, y: Out) -> Step {
        let v_out = match then {
            Then::Nothing => None,
            Then::Gelu { pre } => Some(pre),
            Then::AddTo { sublayer, .. } => Some(sublayer),
        };
        let v = v_out.filter(|out| self.taps.wants(out)).map(|out| out.buffer);
        let epilogue = match then {
            Then::Nothing => Epilogue::Bias,
            Then::Gelu { .. } => Epilogue::Gelu { pre: v },
            Then::AddTo { resid, .. } => Epilogue::Residual { resid, sublayer: v },
        };
        self.rec.module(|| layer.name.clone());
        self.kernels.linear(&mut self.rec, &layer.layer, x, y.buffer, epilogue, self.rows)?;
        if let Some(v_out) = v_out {
            self.tap(v_out)?;
        }
        self.tap(y)
    }

    fn attention(&mut self, attn: &Attention, qkv: &wgpu::Buffer, seq_start: &wgpu::Buffer, z: Out) -> Step {
        let shape = AttentionShape {
            n_tokens: self.rows.n_tokens,
            n_heads: attn.n_heads,
            head_dim: attn.head_dim,
            window: attn.window,
        };
        self.rec.module(|| attn.name.clone());
        let batch = self.batch;
        self.rec.work(|| {
            // Per (query, head, key): q·k and p·v, head_dim multiply-adds each.
            let keys: usize = (0..shape.n_tokens)
                .map(|t| {
                    let first = batch.seq_start[t] as usize;
                    t + 1 - shape.window.map_or(first, |w| first.max((t + 1).saturating_sub(w)))
                })
                .sum();
            let (t, width) = (shape.n_tokens, shape.n_heads * shape.head_dim);
            Work {
                flops: 4.0 * (keys * width) as f64,
                bytes_read: 4.0 * (3 * t * width + t) as f64,
                bytes_written: 4.0 * (t * width) as f64,
                shapes: format!(
                    "qkv [{t}, 3·{width}] → z [{t}, {width}]; {} heads of {}",
                    shape.n_heads, shape.head_dim
                ),
                ..Work::default()
            }
        });
        self.kernels.attention(&mut self.rec, qkv, seq_start, z.buffer, shape, self.rows.scratch)?;
        self.tap(z)
    }

    /// Copies `out` to the host if its hook is requested; stops once it is the deepest one.
    fn tap(&mut self, out: Out) -> Step {
        self.taps.tap(&mut self.rec, self.rows.n_tokens, out)
    }

    /// On a GPU, submits the blocks recorded so far every `SUBMIT_EVERY_BLOCKS` blocks.
    fn block_recorded(&mut self, layer: usize) {
        let on_gpu = self.rec.gpu().info.device_type != wgpu::DeviceType::Cpu;
        if on_gpu && (layer + 1) % SUBMIT_EVERY_BLOCKS == 0 {
            self.rec.submit_so_far();
        }
    }
}

struct Staged {
    hook: Hook,
    buffer: wgpu::Buffer,
    columns: Columns,
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

/// The hook buffers being copied out during a forward.
struct Taps<'p> {
    plan: &'p HookPlan,
    staged: Vec<Staged>,
}

impl Taps<'_> {
    fn wants(&self, out: &Out) -> bool {
        out.hook.is_some_and(|hook| self.plan.wants(hook))
    }

    fn tap(&mut self, rec: &mut Recorder, n_tokens: usize, out: Out) -> Step {
        let Some(hook) = out.hook else { return Ok(()) };
        if self.plan.wants(hook) {
            // The activation buffers hold exactly n_tokens rows.
            let bytes = out.buffer.size();
            let row_width = bytes as usize / 4 / n_tokens;
            let (part, parts) = out.part;
            let width = row_width / parts;
            let columns = Columns { n_tokens, row_width, start: part * width, width };
            let staging = rec.gpu().staging(&hook.to_string(), bytes);
            rec.copy(out.buffer, &staging, bytes);
            self.staged.push(Staged { hook, buffer: staging, columns });
        }
        if hook == self.plan.deepest() {
            Err(Stop::Reached)
        } else {
            Ok(())
        }
    }
}
