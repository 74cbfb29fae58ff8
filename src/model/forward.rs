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
//!
//! A forward may also start at a block, from that block's input rows of an earlier run
//! ([`Resume`]): what an intervention at block L changes is only what comes after it, so an
//! ablated run need not recompute blocks 0..L. And a plan may ask for the logits at each
//! sequence's last token only, which is all a next-token distribution needs.

use super::{BlockWeights, GptNeoConfig, GptNeoWeights, Hook, HookPlan, HookPoint, HostTensor};
use crate::gpu::{Gpu, PassTime, Recorder, Trace, Work};
use crate::kernels::{
    AttentionShape, Epilogue, Fused, GpuIntervention, GpuLayerNorm, GpuLinear, GpuPositions, Kernels,
    LinearUse, Rows, Shapes,
};
use crate::model::Batch;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// GPT-Neo weights uploaded to the GPU: the blocks up to the deepest hook, `wpe`, `ln_f` when all
/// blocks are there. `wte` stays on the host: a batch uploads only its tokens' rows.
pub struct GpuModel {
    pub config: GptNeoConfig,
    wte: HostTensor,
    /// `wpe` on the host too, for `hook_pos_embed` (its rows, gathered: no arithmetic).
    wpe_host: HostTensor,
    wpe: GpuPositions,
    blocks: Vec<Block>,
    ln_f: Option<Named<GpuLayerNorm>>,
    /// The tied unembedding `wte` in chunks of rows, uploaded by the first forward that asks for
    /// the logits.
    unembedding: Mutex<Option<Arc<Vec<UnembeddingChunk>>>>,
}

/// Rows `first_row..` of the tied unembedding, as a linear layer without bias.
struct UnembeddingChunk {
    first_row: usize,
    linear: Named<GpuLinear>,
}

/// Vocabulary rows per unembedding chunk: small enough that a chunk's weights and its
/// `[tokens, rows]` output fit any adapter's storage binding for thousands of tokens.
pub const UNEMBEDDING_CHUNK_ROWS: usize = 4096;

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
            wpe_host: weights.wpe.clone(),
            unembedding: Mutex::new(None),
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

    /// Block `layer`'s MLP expansion (c_fc) as uploaded, if that block is on the GPU.
    pub fn mlp_expansion(&self, layer: usize) -> Option<&GpuLinear> {
        self.blocks.get(layer).map(|block| &block.mlp.c_fc.layer)
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
            self.run(gpu, kernels, batch, plan, None, Recorder::new(gpu, timed), Recorder::finish)?;
        times.passes = passes;
        Ok((acts, times))
    }

    /// `forward` from block `resume.layer` on, its input being `resume.resid`: the blocks before
    /// it are not run, and `plan` may read no hook before `blocks.{layer}.hook_resid_pre`.
    pub fn forward_from(
        &self,
        gpu: &Gpu,
        kernels: &Kernels,
        batch: &Batch,
        plan: &HookPlan,
        resume: &Resume,
    ) -> Result<(Activations, ForwardTimes)> {
        let (acts, times, _) =
            self.run(gpu, kernels, batch, plan, Some(resume), Recorder::new(gpu, false), Recorder::finish)?;
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
            self.run(gpu, kernels, batch, plan, None, Recorder::traced(gpu), Recorder::finish_traced)?;
        Ok((acts, trace))
    }

    #[allow(clippy::too_many_arguments)]
    fn run<'g, T>(
        &self,
        gpu: &'g Gpu,
        kernels: &Kernels,
        batch: &Batch,
        plan: &HookPlan,
        resume: Option<&Resume>,
        rec: Recorder<'g>,
        finish: impl FnOnce(Recorder<'g>) -> Result<T>,
    ) -> Result<(Activations, ForwardTimes, T)> {
        let config = &self.config;
        if plan.blocks_needed(config) > self.blocks.len()
            || (plan.wants(Hook::LnFinal) && self.ln_f.is_none())
        {
            bail!("hook {} needs weights that were not uploaded", plan.deepest());
        }
        if let Some(resume) = resume {
            resume.check(config, batch, plan, self.blocks.len())?;
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
        let token_rows = self.wte.gather_rows(&ids)?;
        let host_embedding =
            if resume.is_none() { self.host_embedding(batch, plan, &token_rows)? } else { None };
        let mut buffers = Buffers::new(gpu, batch, &token_rows, h, inter)?;
        if let Some(resume) = resume {
            gpu.queue.write_buffer(&buffers.resid, 0, bytemuck::cast_slice(resume.resid));
        } else if let Some(e) = &host_embedding {
            let sum: Vec<f32> = e.tokens.iter().zip(&e.positions).map(|(a, b)| a + b).collect();
            gpu.queue.write_buffer(&buffers.resid, 0, bytemuck::cast_slice(&sum));
        }
        let scratch = kernels.scratch(gpu, n_tokens, &[h, 3 * h, inter])?;
        let logit_rows = if plan.last_token_logits() { batch.n_sequences() } else { n_tokens };
        let unembedding =
            if plan.wants(Hook::Logits) { Some(self.unembedding(gpu, kernels, logit_rows)?) } else { None };
        let mut f = Recording {
            kernels,
            rec,
            rows: Rows { n_tokens, scratch: &scratch },
            taps: Taps { plan, staged: Vec::new() },
            batch,
        };
        let first_block = resume.map_or(0, |r| r.layer);
        let embed_on_gpu = resume.is_none() && host_embedding.is_none();
        let unembedding = unembedding.as_ref().map(|u| u.as_slice());
        match self.record(&mut f, &mut buffers, first_block, embed_on_gpu, unembedding) {
            Ok(()) | Err(Stop::Reached) => {}
            Err(Stop::Failed(error)) => return Err(error),
        }
        let Recording { taps, rec, .. } = f;
        let record = started.elapsed();
        let finished = finish(rec)?;
        let forward = started.elapsed();

        let started = Instant::now();
        let mut acts = Activations { n_tokens, values: HashMap::new(), shapes: HashMap::new() };
        let staging: Vec<&wgpu::Buffer> = taps.staged.iter().map(|s| &s.buffer).collect();
        for (staged, rows) in taps.staged.iter().zip(gpu.read_staging(&staging)?) {
            staged.place(&rows, &mut acts, batch);
        }
        // The embeddings are rows of the tables, read on the host (as interventions changed them).
        let (tokens, positions) = match host_embedding {
            Some(e) => (Some(e.tokens), Some(e.positions)),
            None => (None, None),
        };
        if plan.wants(Hook::Embed) {
            let rows = tokens.unwrap_or_else(|| bytemuck::pod_collect_to_vec(&token_rows));
            acts.insert(Hook::Embed, vec![n_tokens, h], rows);
        }
        if plan.wants(Hook::PosEmbed) {
            let rows = match positions {
                Some(rows) => rows,
                None => self.position_rows(batch)?,
            };
            acts.insert(Hook::PosEmbed, vec![n_tokens, h], rows);
        }
        let readback = started.elapsed();
        let times = ForwardTimes { forward, record, readback, passes: Vec::new() };
        Ok((acts, times, finished))
    }

    /// The rows of `wpe` at each token's position.
    fn position_rows(&self, batch: &Batch) -> Result<Vec<f32>> {
        let positions: Vec<usize> = batch.positions.iter().map(|&p| p as usize).collect();
        Ok(bytemuck::pod_collect_to_vec(&self.wpe_host.gather_rows(&positions)?))
    }

    /// The embeddings summed on the host when an intervention changes either (`None` when none
    /// does: the embed kernel sums them on the GPU). Both are rows of tables the host holds, and
    /// the sum is the kernel's one f32 addition.
    fn host_embedding(
        &self,
        batch: &Batch,
        plan: &HookPlan,
        token_rows: &[u8],
    ) -> Result<Option<HostEmbedding>> {
        let changes = |hook: Hook| plan.interventions().iter().filter(move |i| i.hook == hook);
        if changes(Hook::Embed).chain(changes(Hook::PosEmbed)).next().is_none() {
            return Ok(None);
        }
        let h = self.config.hidden_size;
        let mut tokens: Vec<f32> = bytemuck::pod_collect_to_vec(token_rows);
        let mut positions = self.position_rows(batch)?;
        for (hook, rows) in [(Hook::Embed, &mut tokens), (Hook::PosEmbed, &mut positions)] {
            for intervention in changes(hook) {
                intervention.apply(rows, h, 0, h, batch);
            }
        }
        Ok(Some(HostEmbedding { tokens, positions }))
    }

    /// HF's GPTNeoForCausalLM.forward: the embeddings, every block, ln_f, and the logits with the
    /// tied unembedding (in chunks of the vocabulary) when they are asked for. From `first_block`
    /// on: a resumed forward, or one whose embeddings were summed on the host (`embed_on_gpu`
    /// false), finds the first block's input in `a.resid` already.
    fn record(
        &self,
        f: &mut Recording,
        a: &mut Buffers,
        first_block: usize,
        embed_on_gpu: bool,
        unembedding: Option<&[UnembeddingChunk]>,
    ) -> Step {
        if first_block == 0 {
            if embed_on_gpu {
                f.rec.module(|| "wte+wpe".to_string());
                f.kernels.embed(
                    &mut f.rec,
                    &self.wpe,
                    &a.token_rows,
                    &a.positions,
                    &a.resid,
                    f.rows.n_tokens,
                );
            }
            f.tap_host(Hook::Embed)?;
            f.tap_host(Hook::PosEmbed)?;
        }
        for block in &self.blocks[first_block..] {
            block.record(f, a)?;
            f.block_recorded(block.layer);
            std::mem::swap(&mut a.resid, &mut a.resid_next);
        }
        if let Some(ln_f) = &self.ln_f {
            f.layernorm(ln_f, &a.resid, Out::new(&a.normed, Hook::LnFinal))?;
        }
        let Some(chunks) = unembedding else { return Ok(()) };
        // The rows unembedded: every token's, or each sequence's last one gathered by copies.
        let h = self.config.hidden_size;
        let (x, rows) = if f.taps.plan.last_token_logits() {
            let n = f.batch.n_sequences();
            let last = f.rec.gpu().storage("last tokens", n * h)?;
            for s in 0..n {
                let t = f.batch.sequence(s).end - 1;
                f.rec.copy_range(&a.normed, (t * h * 4) as u64, &last, (s * h * 4) as u64, (h * 4) as u64);
            }
            (last, Rows { n_tokens: n, ..f.rows })
        } else {
            (a.normed.clone(), f.rows)
        };
        let every_token = std::mem::replace(&mut f.rows, rows);
        for chunk in chunks {
            let logits = f.rec.gpu().storage("logits", f.rows.n_tokens * chunk.linear.layer.n_out)?;
            let out = Out::logits(&logits, chunk.first_row, self.config.vocab_size);
            f.linear(&chunk.linear, &x, Then::Nothing, out)?;
        }
        f.rows = every_token;
        Ok(())
    }

    /// The unembedding chunks, uploaded on first use.
    fn unembedding(
        &self,
        gpu: &Gpu,
        kernels: &Kernels,
        n_tokens: usize,
    ) -> Result<Arc<Vec<UnembeddingChunk>>> {
        let (h, vocab) = (self.config.hidden_size, self.config.vocab_size);
        let output_bytes = (n_tokens * UNEMBEDDING_CHUNK_ROWS * 4) as u64;
        if output_bytes > gpu.max_binding_bytes() {
            bail!(
                "the logits of {n_tokens} tokens need {output_bytes}-byte GPU buffers but {} binds at most {} bytes; use fewer tokens",
                gpu.adapter_name(),
                gpu.max_binding_bytes()
            );
        }
        let mut cached = self.unembedding.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(chunks) = cached.as_ref() {
            return Ok(chunks.clone());
        }
        let bytes = self.wte.bytes();
        let mut chunks = Vec::new();
        for start in (0..vocab).step_by(UNEMBEDDING_CHUNK_ROWS) {
            let end = (start + UNEMBEDDING_CHUNK_ROWS).min(vocab);
            let name = format!("lm_head (wte rows {start}..{end})");
            let layer = kernels.upload_linear(gpu, &name, &[&bytes[start * h * 4..end * h * 4]], None, h)?;
            chunks.push(UnembeddingChunk { first_row: start, linear: Named { name, layer } });
        }
        gpu.flush()?;
        self.wte.release_pages();
        let chunks = Arc::new(chunks);
        *cached = Some(chunks.clone());
        Ok(chunks)
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
        f.tap(Out::pattern(&a.qkv, at(HookPoint::AttnPattern), self))?;
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

/// The embeddings of a batch as interventions changed them, `[tokens, hidden]` each.
struct HostEmbedding {
    tokens: Vec<f32>,
    positions: Vec<f32>,
}

/// Where a resumed forward starts: block `layer`, whose input (`blocks.{layer}.hook_resid_pre`)
/// is `resid`, `[batch tokens, hidden]` row-major, as an earlier forward of the same sequences
/// read it.
pub struct Resume<'a> {
    pub layer: usize,
    pub resid: &'a [f32],
}

impl Resume<'_> {
    /// The resumed forward of `plan` over `batch` is possible: the block exists, the rows fit the
    /// batch, and nothing before the block is read or changed.
    fn check(&self, config: &GptNeoConfig, batch: &Batch, plan: &HookPlan, blocks: usize) -> Result<()> {
        if self.layer >= blocks {
            bail!("cannot resume at block {}: {blocks} blocks are on the GPU", self.layer);
        }
        let rows = batch.n_tokens() * config.hidden_size;
        if self.resid.len() != rows {
            bail!(
                "a resumed forward of {} tokens needs {rows} residual values, got {}",
                batch.n_tokens(),
                self.resid.len()
            );
        }
        let start = Hook::block(self.layer, HookPoint::ResidPre);
        let before =
            plan.hooks().iter().chain(plan.interventions().iter().map(|i| &i.hook)).find(|&&h| h < start);
        if let Some(hook) = before {
            bail!(
                "a forward resumed at block {} cannot read or change {hook}, which comes before it",
                self.layer
            );
        }
        Ok(())
    }
}

/// Hook activations read back from a forward, row-major: `[n_tokens, width]`, or for the
/// attention pattern `[n_sequences, heads, longest, longest]` (`shape` says); with
/// [`HookPlan::last_token_logits`], the logits are `[n_sequences, vocab]`.
pub struct Activations {
    pub n_tokens: usize,
    values: HashMap<Hook, Vec<f32>>,
    shapes: HashMap<Hook, Vec<usize>>,
}

impl Activations {
    pub fn get(&self, hook: Hook) -> Option<&[f32]> {
        self.values.get(&hook).map(Vec::as_slice)
    }

    pub fn take(&mut self, hook: Hook) -> Option<Vec<f32>> {
        self.values.remove(&hook)
    }

    pub fn shape(&self, hook: Hook) -> Option<&[usize]> {
        self.shapes.get(&hook).map(Vec::as_slice)
    }

    fn insert(&mut self, hook: Hook, shape: Vec<usize>, values: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.shapes.insert(hook, shape);
        self.values.insert(hook, values);
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

/// A kernel's output buffer, and the hook it is (if any) with how its rows become the hook's.
#[derive(Clone, Copy)]
struct Out<'b> {
    buffer: &'b wgpu::Buffer,
    hook: Option<Hook>,
    place: Place,
}

/// How a staged buffer's rows become a hook's values.
#[derive(Clone, Copy)]
enum Place {
    /// Part `part` of `parts` equal column blocks of each row (all of it, or q, k or v of the
    /// qkv rows).
    Columns { part: usize, parts: usize },
    /// The rows are columns `offset..` of the hook's rows of `total` (a chunk of the logits).
    Into { offset: usize, total: usize },
    /// The rows are qkv: the hook is the attention pattern of this layer, computed from q and k.
    Pattern { n_heads: usize, head_dim: usize, window: Option<usize> },
}

impl<'b> Out<'b> {
    fn new(buffer: &'b wgpu::Buffer, hook: Hook) -> Self {
        Out { buffer, hook: Some(hook), place: Place::Columns { part: 0, parts: 1 } }
    }

    fn untapped(buffer: &'b wgpu::Buffer) -> Self {
        Out { buffer, hook: None, place: Place::Columns { part: 0, parts: 1 } }
    }

    fn columns(buffer: &'b wgpu::Buffer, hook: Hook, part: usize, parts: usize) -> Self {
        Out { buffer, hook: Some(hook), place: Place::Columns { part, parts } }
    }

    fn logits(buffer: &'b wgpu::Buffer, offset: usize, total: usize) -> Self {
        Out { buffer, hook: Some(Hook::Logits), place: Place::Into { offset, total } }
    }

    fn pattern(qkv: &'b wgpu::Buffer, hook: Hook, attn: &Attention) -> Self {
        let place = Place::Pattern { n_heads: attn.n_heads, head_dim: attn.head_dim, window: attn.window };
        Out { buffer: qkv, hook: Some(hook), place }
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

    /// `layer` on `x` into `y`, then `then`; taps `v` (where `then` keeps it) and `y`. Where an
    /// intervention changes `v`, the epilogue runs apart: v stored, changed, then finished.
    fn linear(&mut self, layer: &Named<GpuLinear>, x: &wgpu::Buffer, then: Then, y: Out) -> Step {
        let v_out = match then {
            Then::Nothing => None,
            Then::Gelu { pre } => Some(pre),
            Then::AddTo { sublayer, .. } => Some(sublayer),
        };
        if let Some(v_out) = v_out.filter(|out| self.taps.changed(out)) {
            let (fused, resid) = match then {
                Then::Gelu { .. } => (Fused::Gelu, None),
                Then::AddTo { resid, .. } => (Fused::ResidualAdd, Some(resid)),
                Then::Nothing => unreachable!("v is kept only by a fused epilogue"),
            };
            self.rec.module(|| layer.name.clone());
            self.kernels.linear(&mut self.rec, &layer.layer, x, v_out.buffer, Epilogue::Bias, self.rows)?;
            self.tap(v_out)?;
            self.rec.module(|| format!("{} epilogue", layer.name));
            let n = self.rows.n_tokens * layer.layer.n_out;
            self.kernels.unfused_epilogue(&mut self.rec, fused, v_out.buffer, resid, y.buffer, n)?;
            return self.tap(y);
        }
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

    /// Applies the interventions on `out`'s hook, then copies it to the host if it is requested;
    /// stops once it is the deepest one.
    fn tap(&mut self, out: Out) -> Step {
        self.intervene(out)?;
        self.taps.tap(&mut self.rec, self.rows.n_tokens, out)
    }

    /// Every intervention on `out`'s hook, in order, in place on its buffer (shaders/intervene.wgsl):
    /// what the rest of the forward reads is the changed value.
    fn intervene(&mut self, out: Out) -> Step {
        let (Some(hook), Place::Columns { part, parts }) = (out.hook, out.place) else { return Ok(()) };
        let plan = self.taps.plan;
        let n_tokens = self.rows.n_tokens;
        let row_width = out.buffer.size() as usize / 4 / n_tokens;
        let (width, batch) = (row_width / parts, self.batch);
        let col_base = part * width;
        for intervention in plan.interventions().iter().filter(|i| i.hook == hook) {
            let (rows, touched) = intervention.touched_tokens(batch);
            if rows.is_empty() {
                continue;
            }
            let rows: Vec<u32> = rows.into_iter().map(|t| t as u32).collect();
            let cols: Vec<u32> = match &intervention.columns {
                Some(columns) => columns.iter().map(|&c| (col_base + c) as u32).collect(),
                None => (col_base..col_base + width).map(|c| c as u32).collect(),
            };
            let (keep, scale, source, per_row) = intervention.kernel_terms(width, &touched);
            let gpu = self.rec.gpu();
            let rows_buffer = gpu.upload("intervention rows", bytemuck::cast_slice(&rows))?;
            let cols_buffer = gpu.upload("intervention columns", bytemuck::cast_slice(&cols))?;
            let source_buffer = gpu.upload("intervention values", bytemuck::cast_slice(&source))?;
            self.rec.module(|| format!("{hook} ← {}", intervention.spec));
            let op = GpuIntervention {
                rows: &rows_buffer,
                n_rows: rows.len(),
                cols: &cols_buffer,
                n_cols: cols.len(),
                source: &source_buffer,
                per_row,
                keep,
                scale,
            };
            self.kernels.intervene(&mut self.rec, out.buffer, row_width, col_base, width, &op);
        }
        Ok(())
    }

    /// A hook read on the host, after the forward (the embeddings); stops if it is the deepest.
    fn tap_host(&mut self, hook: Hook) -> Step {
        self.taps.reached(hook, true)
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
    /// Rows in the buffer: the batch's tokens, or its sequences for last-token logits.
    n_rows: usize,
    row_width: usize,
    place: Place,
}

impl Staged {
    /// Puts the read-back `rows` (`[n_rows, row_width]`) where they belong in `acts`.
    fn place(&self, rows: &[f32], acts: &mut Activations, batch: &Batch) {
        let n = self.n_rows;
        let rows = &rows[..n * self.row_width];
        match self.place {
            Place::Columns { part, parts } => {
                let width = self.row_width / parts;
                let values = if parts == 1 {
                    rows.to_vec()
                } else {
                    rows.chunks_exact(self.row_width)
                        .flat_map(|r| &r[part * width..(part + 1) * width])
                        .copied()
                        .collect()
                };
                acts.insert(self.hook, vec![n, width], values);
            }
            Place::Into { offset, total } => {
                let values = acts.values.entry(self.hook).or_insert_with(|| vec![0.0; n * total]);
                for (t, row) in rows.chunks_exact(self.row_width).enumerate() {
                    values[t * total + offset..t * total + offset + self.row_width].copy_from_slice(row);
                }
                acts.shapes.insert(self.hook, vec![n, total]);
            }
            Place::Pattern { n_heads, head_dim, window } => {
                let (shape, values) = attention_pattern(rows, batch, n_heads, head_dim, window);
                acts.insert(self.hook, shape, values);
            }
        }
    }
}

/// The shape of the attention pattern of `n_sequences` sequences, the longest `longest` tokens.
pub fn attention_pattern_shape(n_sequences: usize, config: &GptNeoConfig, longest: usize) -> Vec<usize> {
    vec![n_sequences, config.num_heads, longest, longest]
}

/// The attention probabilities of every sequence of `batch`, from the qkv rows
/// (`[n_tokens, 3·width]`): scores q·k unscaled over the keys each query sees (its sequence,
/// causal, the window on local layers), softmax, in f64, rounded to f32. Laid out
/// `[n_sequences, n_heads, longest, longest]` (query, then key, each counted from the sequence's
/// first token), zero where a query or key is past its sequence's end or not seen.
pub fn attention_pattern(
    qkv: &[f32],
    batch: &Batch,
    n_heads: usize,
    head_dim: usize,
    window: Option<usize>,
) -> (Vec<usize>, Vec<f32>) {
    let width = n_heads * head_dim;
    let longest = (0..batch.n_sequences()).map(|s| batch.sequence(s).len()).max().unwrap_or(0);
    let mut pattern = vec![0.0f32; batch.n_sequences() * n_heads * longest * longest];
    let row = |t: usize| &qkv[t * 3 * width..(t + 1) * 3 * width];
    for s in 0..batch.n_sequences() {
        let tokens = batch.sequence(s);
        for (i, t) in tokens.clone().enumerate() {
            let first = window.map_or(0, |w| (i + 1).saturating_sub(w));
            for h in 0..n_heads {
                let q = &row(t)[h * head_dim..(h + 1) * head_dim];
                let scores: Vec<f64> = (first..=i)
                    .map(|j| {
                        let k = &row(tokens.start + j)[width + h * head_dim..width + (h + 1) * head_dim];
                        q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                let at = ((s * n_heads + h) * longest + i) * longest;
                for (j, e) in (first..=i).zip(&exps) {
                    pattern[at + j] = (e / total) as f32;
                }
            }
        }
    }
    (vec![batch.n_sequences(), n_heads, longest, longest], pattern)
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

    /// Whether an intervention changes `out`'s hook.
    fn changed(&self, out: &Out) -> bool {
        out.hook.is_some_and(|hook| self.plan.interventions().iter().any(|i| i.hook == hook))
    }

    fn tap(&mut self, rec: &mut Recorder, n_tokens: usize, out: Out) -> Step {
        let Some(hook) = out.hook else { return Ok(()) };
        // The activation buffers hold exactly n_tokens rows.
        let bytes = out.buffer.size();
        let row_width = bytes as usize / 4 / n_tokens;
        if self.plan.wants(hook) {
            let staging = rec.gpu().staging(&hook.to_string(), bytes);
            rec.copy(out.buffer, &staging, bytes);
            self.staged.push(Staged { hook, buffer: staging, n_rows: n_tokens, row_width, place: out.place });
        }
        // A hook written in parts is complete with its last part.
        let complete = match out.place {
            Place::Into { offset, total } => offset + row_width == total,
            _ => true,
        };
        self.reached(hook, complete)
    }

    /// `Stop::Reached` once the deepest hook is `complete`.
    fn reached(&self, hook: Hook, complete: bool) -> Step {
        if complete && hook == self.plan.deepest() {
            Err(Stop::Reached)
        } else {
            Ok(())
        }
    }
}
