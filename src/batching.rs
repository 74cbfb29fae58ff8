//! Any number of sequences through the model with bounded memory: they are grouped, in order,
//! into GPU batches of at most a set number of tokens (never splitting a sequence), each batch
//! runs as one packed forward, and its hook rows go to the caller before the next batch is made.
//!
//! Every token's activations depend only on its own sequence (attention never crosses a
//! sequence boundary, and the kernels' sums over k run in the same order whichever tile a token
//! falls in), so the rows are bit-identical to those of one batch holding everything; the tests
//! check that.

use crate::engine::Engine;
use crate::kernels::Operands;
use crate::model::{Activations, Batch, GptNeoConfig, Hook, HookPlan, Resume, UNEMBEDDING_CHUNK_ROWS};
use crate::notes::{Notes, Unit};
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

/// Memory a batch's activation buffers may take by default. Large enough that a GPU's kernels run
/// at full width and per-batch costs vanish, small enough that a CPU driver (whose "GPU memory" is
/// the process's own) stays a few hundred MiB above the model.
pub const DEFAULT_BATCH_BYTES: usize = 256 << 20;

/// How many tokens a batch of a model may hold on an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// The most tokens one batch can hold: the widest per-token buffer within the adapter's
    /// largest storage binding and buffer, and (for kernels that read texel operands) one texture
    /// row per token within its largest texture.
    pub adapter_max: usize,
    /// The batch size unless `--batch-tokens` says otherwise: [`DEFAULT_BATCH_BYTES`] of
    /// activations, but at least one sequence of the model's full length where the adapter allows.
    pub default: usize,
}

impl BatchLimits {
    /// The limits for `config` on a device with `limits`; `texel_rows` when the kernels copy
    /// activations into textures of one row per token.
    pub fn new(limits: &wgpu::Limits, texel_rows: bool, config: &GptNeoConfig) -> BatchLimits {
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let widest = 4 * (3 * h).max(inter);
        let largest_buffer = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) as usize;
        let mut adapter_max = largest_buffer / widest;
        if texel_rows {
            adapter_max = adapter_max.min(limits.max_texture_dimension_2d as usize);
        }
        // The forward's buffers (src/model/forward.rs): embeddings and seven hidden-wide
        // activations, qkv, c_fc's output before and after GELU, two u32 per token; the texel
        // copies of the three operand widths; the widest hook's copy for reading back.
        let mut per_token = 4 * (8 * h + 3 * h + 2 * inter + 2) + widest;
        if texel_rows {
            per_token += 4 * (h + 3 * h + inter);
        }
        let budget = DEFAULT_BATCH_BYTES / per_token;
        let default = budget.max(config.max_position_embeddings).min(adapter_max).max(1);
        BatchLimits { adapter_max: adapter_max.max(1), default }
    }

    /// The limits of `engine`'s device for its model.
    pub fn of(engine: &Engine) -> BatchLimits {
        let texel_rows = engine.kernels.spec().operands == Operands::Texels;
        BatchLimits::new(&engine.gpu.device.limits(), texel_rows, &engine.model.config)
    }

    /// The limits of `engine` for a forward of `plan`: with the logits, each token also takes a
    /// `vocab`-wide row on the device and its copy for reading back, and the unembedding's
    /// chunks of rows bound the batch by the adapter's binding size too.
    pub fn for_plan(engine: &Engine, plan: &HookPlan) -> BatchLimits {
        let limits = BatchLimits::of(engine);
        if !plan.wants(Hook::Logits) {
            return limits;
        }
        let config = &engine.model.config;
        let per_token_logits = 2 * 4 * config.vocab_size;
        let adapter_max =
            limits.adapter_max.min(engine.gpu.max_binding_bytes() as usize / (4 * UNEMBEDDING_CHUNK_ROWS));
        let budget = DEFAULT_BATCH_BYTES / per_token_logits;
        let default = limits.default.min(budget.max(config.max_position_embeddings)).min(adapter_max).max(1);
        BatchLimits { adapter_max: adapter_max.max(1), default }
    }

    /// The batch size: `asked` (`--batch-tokens`) if the adapter can hold it, else the default.
    pub fn choose(&self, asked: Option<usize>, adapter: &str) -> Result<usize> {
        match asked {
            None => Ok(self.default),
            Some(0) => bail!("--batch-tokens must be at least 1"),
            Some(n) if n > self.adapter_max => bail!(
                "--batch-tokens {n} is more than {adapter} can hold in one batch of this model ({} tokens); use at most {}",
                self.adapter_max,
                self.adapter_max
            ),
            Some(n) => Ok(n),
        }
    }
}

/// What a streamed run did.
#[derive(Clone, Debug, Default)]
pub struct StreamStats {
    pub batches: usize,
    pub sequences: usize,
    pub tokens: usize,
    /// Time in the forwards (recording and running them).
    pub forward: Duration,
    /// Time reading the hook rows back.
    pub readback: Duration,
    /// Wall time of the whole run, the caller's work on each batch included.
    pub wall: Duration,
}

/// Where every batch of a streamed run starts when not at the embeddings: block `layer`, whose
/// input rows for sequence `i` of the run are `rows(i)` (read by an earlier run of the same
/// tokens). Nothing before the block is computed.
#[derive(Clone, Copy)]
pub struct ResumeAt<'a> {
    pub layer: usize,
    pub rows: &'a dyn Fn(usize) -> &'a [f32],
}

/// Runs sequences through an engine up to one hook, batch by batch.
pub struct Streamer<'a> {
    pub engine: &'a Engine,
    pub plan: &'a HookPlan,
    pub hook: Hook,
    pub batch_tokens: usize,
    /// Hears the progress (a bar over `total_tokens`), and is asked between batches whether to stop.
    pub notes: &'a dyn Notes,
    /// The bar's label ("extract", "challenge") and its total in tokens.
    pub label: &'a str,
    pub total_tokens: u64,
    /// `None`: every batch runs from the embeddings.
    pub resume: Option<ResumeAt<'a>>,
}

impl Streamer<'_> {
    /// Runs `sequences`, in order, in batches of at most `batch_tokens` tokens, and calls `each`
    /// with every batch, the index of its first sequence and the hook's rows `[batch tokens,
    /// width]`, in order. `name(i)` describes sequence `i` in errors ("word \"x\" (line 3)").
    pub fn run(
        &self,
        sequences: impl IntoIterator<Item = Result<Vec<u32>>>,
        name: &dyn Fn(usize) -> String,
        mut each: impl FnMut(&Batch, usize, Vec<f32>) -> Result<()>,
    ) -> Result<StreamStats> {
        self.run_all(sequences, name, |batch, first, mut activations| {
            let rows = activations.take(self.hook).context("the forward did not read back the hook")?;
            each(batch, first, rows)
        })
    }

    /// `run`, handing `each` every hook of the plan a batch read back.
    pub fn run_all(
        &self,
        sequences: impl IntoIterator<Item = Result<Vec<u32>>>,
        name: &dyn Fn(usize) -> String,
        mut each: impl FnMut(&Batch, usize, Activations) -> Result<()>,
    ) -> Result<StreamStats> {
        let started = Instant::now();
        let progress = self.notes.bar(self.label, Some(self.total_tokens), 0, Unit::Tokens);
        let mut stats = StreamStats::default();
        let mut pending: Vec<Vec<u32>> = Vec::new();
        let mut pending_tokens = 0;
        let mut first = 0;
        // With the logits at last tokens, each sequence brings a vocabulary-wide row, on the
        // device and in its copy for reading back: as many as the batch memory budget holds.
        let max_sequences = if self.plan.wants(Hook::Logits) && self.plan.last_token_logits() {
            (DEFAULT_BATCH_BYTES / (2 * 4 * self.engine.model.config.vocab_size)).max(1)
        } else {
            usize::MAX
        };
        let mut run_pending = |pending: &mut Vec<Vec<u32>>,
                               first: usize,
                               stats: &mut StreamStats|
         -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            self.notes.check_interrupt()?;
            let mut batch = Batch::pack(pending, self.engine.model.config.max_position_embeddings)
                .with_context(|| format!("batch starting at {}", name(first)))?;
            batch.first_sequence = first;
            let (activations, times) = match self.resume {
                None => self.engine.forward(&batch, self.plan, false)?,
                Some(at) => {
                    let resid: Vec<f32> =
                        (first..first + pending.len()).flat_map(|i| (at.rows)(i).iter().copied()).collect();
                    self.engine.forward_from(&batch, self.plan, &Resume { layer: at.layer, resid: &resid })?
                }
            };
            stats.forward += times.forward;
            stats.readback += times.readback;
            stats.batches += 1;
            stats.sequences += batch.n_sequences();
            stats.tokens += batch.n_tokens();
            each(&batch, first, activations)?;
            progress.advance(batch.n_tokens() as u64);
            pending.clear();
            Ok(())
        };
        for (index, sequence) in sequences.into_iter().enumerate() {
            let sequence = sequence?;
            if sequence.is_empty() {
                bail!("{} has no tokens", name(index));
            }
            let positions = self.engine.model.config.max_position_embeddings;
            if sequence.len() > positions {
                bail!("{} has {} tokens; the model has {positions} positions", name(index), sequence.len());
            }
            if sequence.len() > self.batch_tokens {
                bail!(
                    "{} has {} tokens, more than a batch holds ({} tokens); raise --batch-tokens or shorten it",
                    name(index),
                    sequence.len(),
                    self.batch_tokens
                );
            }
            if pending_tokens + sequence.len() > self.batch_tokens || pending.len() == max_sequences {
                run_pending(&mut pending, first, &mut stats)?;
                pending_tokens = 0;
                first = index;
            }
            pending_tokens += sequence.len();
            pending.push(sequence);
        }
        run_pending(&mut pending, first, &mut stats)?;
        progress.finish();
        if stats.sequences == 0 {
            bail!("nothing to run: no sequences");
        }
        stats.wall = started.elapsed();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptNeoConfig;

    fn limits(binding: u64, texture: u32) -> wgpu::Limits {
        wgpu::Limits {
            max_storage_buffer_binding_size: binding,
            max_buffer_size: binding * 2,
            max_texture_dimension_2d: texture,
            ..wgpu::Limits::default()
        }
    }

    #[test]
    fn the_widest_buffer_and_the_texture_bound_the_batch() {
        let config = GptNeoConfig::gpt_neo_125m();
        // c_fc's output, 3072 floats per token, within 128 MiB.
        let at = BatchLimits::new(&limits(128 << 20, 16384), false, &config);
        assert_eq!(at.adapter_max, (128 << 20) / (4 * 3072));
        let texels = BatchLimits::new(&limits(128 << 20, 8192), true, &config);
        assert_eq!(texels.adapter_max, 8192);
        // The default keeps within the memory budget but holds a whole 2048-token sequence.
        assert!(at.default >= config.max_position_embeddings && at.default <= at.adapter_max, "{at:?}");
        let per_token_floor = 4 * (11 * 768 + 2 * 3072);
        assert!(at.default * per_token_floor <= DEFAULT_BATCH_BYTES, "{at:?}");
        let tight = BatchLimits::new(&limits(1 << 20, 16384), false, &config);
        assert_eq!((tight.adapter_max, tight.default), (85, 85));
    }

    #[test]
    fn asked_sizes_are_checked_against_the_adapter() {
        let limits = BatchLimits { adapter_max: 100, default: 50 };
        assert_eq!(limits.choose(None, "gpu").unwrap(), 50);
        assert_eq!(limits.choose(Some(100), "gpu").unwrap(), 100);
        assert!(limits.choose(Some(0), "gpu").unwrap_err().to_string().contains("at least 1"));
        let err = limits.choose(Some(101), "gpu").unwrap_err().to_string();
        assert!(err.contains("use at most 100"), "{err}");
    }
}
