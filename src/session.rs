//! A model loaded once and run many times on inputs held in memory (what the Python module keeps
//! between calls), and the hook-reading core it shares with `extract`: which hooks a list of
//! names and patterns means, how each is pooled, and the batches streamed through the model with
//! each hook's values handed over batch by batch.
//!
//! Both callers go through [`stream_hooks`], so the values a [`Session`] returns are the very
//! floats `extract` writes for the same input and hooks; only where they are put differs (a file
//! written batch by batch, or arrays laid out per sequence).

use crate::batching::{BatchLimits, StreamStats, Streamer};
use crate::engine::{Engine, LoadedModel, ModelSource, ResolvedModel};
use crate::hub::FetchOptions;
use crate::kernels::Variant;
use crate::model::{Batch, GptNeoConfig, Hook, HookPlan, InterventionKind, Interventions, ModelDir};
use crate::notes::Notes;
use crate::pool::{pool, Pool};
use crate::tokenize::Tokenizer;
use anyhow::{bail, Result};

/// The hooks that `names` (names or patterns such as `blocks.*.mlp.hook_pre`) stand for, in the
/// order given; an unknown name, a block out of range or a pattern matching nothing is an error.
pub fn expand_hooks(names: &[String], config: &GptNeoConfig) -> Result<Vec<Hook>> {
    let mut hooks = Vec::new();
    for name in names {
        hooks.extend(Hook::expand(name, config)?);
    }
    Ok(hooks)
}

/// How each of `hooks` is pooled when the run asks for `asked`: by default the mean over a word's
/// tokens (the logits: the last token) for words, and no pooling for a text or token ids. Max
/// pooling of the logits is refused.
pub fn hook_pooling(hooks: &[Hook], asked: Option<Pool>, words: bool) -> Result<Vec<Pool>> {
    hooks
        .iter()
        .map(|&hook| {
            let how = match (asked, hook) {
                (Some(how), _) => how,
                (None, Hook::Logits) if words => Pool::Last,
                (None, _) if words => Pool::Mean,
                (None, _) => Pool::None,
            };
            if hook == Hook::Logits && how == Pool::Max {
                bail!(
                    "--pool max does not apply to the logits: the maximum of each vocabulary column over a \
                     word's positions is no distribution; use last (the prediction after the word), mean, first or none"
                );
            }
            Ok(how)
        })
        .collect()
}

/// Cuts a text's `ids` to `max_tokens` (default and ceiling: the model's `positions`), saying so
/// in `warnings`.
pub fn cut_text(
    ids: &mut Vec<u32>,
    max_tokens: Option<usize>,
    positions: usize,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let limit = match max_tokens {
        Some(0) => bail!("--max-tokens must be at least 1"),
        Some(n) if n > positions => {
            warnings.push(format!(
                "--max-tokens {n} is above the model's {positions} positions; using {positions}"
            ));
            positions
        }
        Some(n) => n,
        None => positions,
    };
    if ids.len() > limit {
        warnings.push(format!("the text has {} tokens; cut to the first {limit}", ids.len()));
        ids.truncate(limit);
    }
    Ok(())
}

/// What [`stream_hooks`] runs and how.
pub struct HookStream<'a> {
    pub engine: &'a Engine,
    pub plan: &'a HookPlan,
    /// The hooks handed over, each with its pooling.
    pub hooks: &'a [Hook],
    pub pooling: &'a [Pool],
    pub batch_tokens: usize,
    pub notes: &'a dyn Notes,
    /// The progress bar's label.
    pub label: &'a str,
}

/// Runs `sequences` in batches and calls `each(i, batch, first, values)` for every hook `i` of
/// `stream.hooks` and every batch (whose first sequence is `first`), in order: a per-token hook's
/// rows `[batch tokens, width]`, or pooled `[batch sequences, width]`; the attention pattern
/// `[batch sequences, heads, longest, longest]`, padded with zeros to the longest sequence of the
/// whole input. `name(i)` describes sequence `i` in errors.
pub fn stream_hooks(
    stream: &HookStream,
    sequences: &[Vec<u32>],
    name: &dyn Fn(usize) -> String,
    mut each: impl FnMut(usize, &Batch, usize, Vec<f32>) -> Result<()>,
) -> Result<StreamStats> {
    let config = &stream.engine.model.config;
    let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
    let streamer = Streamer {
        engine: stream.engine,
        plan: stream.plan,
        hook: stream.plan.deepest(),
        batch_tokens: stream.batch_tokens,
        notes: stream.notes,
        label: stream.label,
        total_tokens: sequences.iter().map(Vec::len).sum::<usize>() as u64,
        resume: None,
    };
    streamer.run_all(sequences.iter().cloned().map(Ok), name, |batch, first, mut acts| {
        for (i, (&hook, &how)) in stream.hooks.iter().zip(stream.pooling).enumerate() {
            let values = acts.take(hook).expect("the forward reads back every requested hook");
            let values = if hook.per_token() {
                pool(&values, hook.width(config), batch, how)
            } else {
                // This batch's patterns, padded from its longest sequence to the input's.
                let shape = acts.shape(hook).expect("every hook read back has a shape");
                repad_pattern(&values, shape, longest)
            };
            each(i, batch, first, values)?;
        }
        Ok(())
    })
}

/// A batch's attention patterns `[sequences, heads, l, l]` laid out for the input's longest
/// sequence instead: `[sequences, heads, longest, longest]`, zeros in the new rows and columns.
fn repad_pattern(values: &[f32], shape: &[usize], longest: usize) -> Vec<f32> {
    let (blocks, l) = (shape[0] * shape[1], shape[2]);
    let mut out = vec![0.0; blocks * longest * longest];
    for b in 0..blocks {
        for q in 0..l {
            let from = &values[(b * l + q) * l..(b * l + q + 1) * l];
            out[(b * longest + q) * longest..(b * longest + q) * longest + l].copy_from_slice(from);
        }
    }
    out
}

/// A model on a GPU with every block and `ln_f`, so that any hook or the logits can be read, kept
/// for as many runs as the caller makes.
pub struct Session {
    /// Where the model came from, and the folder it was read from.
    pub source: ModelSource,
    pub resolved: ResolvedModel,
    pub model: LoadedModel,
    pub engine: Engine,
    /// Tokens per GPU batch asked for (`None`: the adapter's default for each run's hooks).
    pub batch_tokens: Option<usize>,
}

/// What a [`Session`] runs.
#[derive(Clone, Debug)]
pub enum SessionInput {
    /// One text, whole, as one sequence (cut to the model's positions, with a warning).
    Text(String),
    /// Words, each alone (as `extract --words` runs a word list).
    Words(Vec<String>),
    /// Token ids, one sequence each.
    Tokens(Vec<Vec<u32>>),
}

/// One run of a [`Session`].
#[derive(Clone, Debug)]
pub struct SessionRun {
    pub input: SessionInput,
    /// Hook names or patterns; may be empty when `logits` is set.
    pub hooks: Vec<String>,
    /// `None`: mean for words (the logits: last), none for a text or token ids.
    pub pool: Option<Pool>,
    /// Put one space before each word (or the text) before tokenizing.
    pub prefix_space: bool,
    /// Also read the logits (pooled as a `logits` hook is), returned apart from the hooks.
    pub logits: bool,
    /// Interventions on the way, as the command line's flags give them (kind and text).
    pub interventions: Vec<(InterventionKind, String)>,
}

/// One hook's values, laid out per sequence.
#[derive(Clone, Debug)]
pub struct HookValues {
    pub hook: Hook,
    /// Pooled: `[sequences, width]`; not pooled: `[sequences, longest, width]`, each sequence's
    /// rows followed by zeros up to the longest; the attention pattern:
    /// `[sequences, heads, longest, longest]`, zero-padded.
    pub shape: Vec<usize>,
    /// `None` for the attention pattern, which is per sequence.
    pub pooling: Option<Pool>,
    pub values: Vec<f32>,
}

/// What a run of a [`Session`] read.
#[derive(Clone, Debug)]
pub struct SessionOutput {
    /// The hooks asked for, in the forward's order, each once.
    pub hooks: Vec<HookValues>,
    /// The logits when asked for apart from the hooks.
    pub logits: Option<HookValues>,
    /// Each sequence's tokens, in order.
    pub lengths: Vec<usize>,
    pub stats: StreamStats,
    /// Things the caller should know (a text cut short); also told to the notes.
    pub warnings: Vec<String>,
}

impl Session {
    /// Resolves `source` (the hub's cache and environment as the CLI uses them), reads the whole
    /// model and puts it on the GPU with the kernel `variant` (default: the fastest for the adapter).
    pub fn open(
        source: ModelSource,
        fetch: &FetchOptions,
        variant: Option<Variant>,
        batch_tokens: Option<usize>,
        notes: &dyn Notes,
    ) -> Result<Session> {
        let resolved = source.resolve(fetch, notes)?;
        let (model, _) =
            LoadedModel::load(&ModelDir::open(&resolved.dir)?, |_| HookPlan::new(&[Hook::Logits]))?;
        let engine = Engine::new(&model.weights, variant, model.load_time)?;
        BatchLimits::of(&engine).choose(batch_tokens, &engine.gpu.adapter_name())?;
        notes.step(&format!(
            "{} on {} with the {} kernels",
            resolved.label,
            engine.gpu.adapter_name(),
            engine.kernels.variant
        ));
        Ok(Session { source, resolved, model, engine, batch_tokens })
    }

    pub fn config(&self) -> &GptNeoConfig {
        &self.model.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.model.tokenizer
    }

    /// Runs `run`: the values of every hook it names, and of the logits if asked, in batches of
    /// the session's size, stopping the forward at the deepest of them.
    pub fn run(&self, run: &SessionRun, notes: &dyn Notes) -> Result<SessionOutput> {
        let config = &self.model.config;
        let mut named = expand_hooks(&run.hooks, config)?;
        let logits_named = named.contains(&Hook::Logits);
        if run.logits {
            named.push(Hook::Logits);
        }
        let plan = HookPlan::new(&named)?;
        let hooks = plan.hooks().to_vec();
        let mut warnings = Vec::new();
        let (sequences, labels, words) = self.sequences(run, &mut warnings)?;
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let plan = plan.with_interventions(Interventions::from_flags(&run.interventions, config, &lengths)?);
        for warning in &warnings {
            notes.warn(warning);
        }
        let pooling = hook_pooling(&hooks, run.pool, words)?;
        let adapter = self.engine.gpu.adapter_name();
        let batch_tokens = BatchLimits::for_plan(&self.engine, &plan).choose(self.batch_tokens, &adapter)?;
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let n = sequences.len();
        let mut outputs: Vec<HookValues> = hooks
            .iter()
            .zip(&pooling)
            .map(|(&hook, &how)| {
                let (shape, pooling) = match (hook.per_token(), how) {
                    (false, _) => (vec![n, config.num_heads, longest, longest], None),
                    (true, Pool::None) => (vec![n, longest, hook.width(config)], Some(how)),
                    (true, _) => (vec![n, hook.width(config)], Some(how)),
                };
                let values = vec![0.0; shape.iter().product()];
                HookValues { hook, shape, pooling, values }
            })
            .collect();
        let stream = HookStream {
            engine: &self.engine,
            plan: &plan,
            hooks: &hooks,
            pooling: &pooling,
            batch_tokens,
            notes,
            label: "run_with_cache",
        };
        let name = |i: usize| labels(i);
        let stats = stream_hooks(&stream, &sequences, &name, |i, batch, first, values| {
            let out = &mut outputs[i];
            match out.pooling {
                // Token rows: each sequence's rows at the start of its own block of `longest`.
                Some(Pool::None) => {
                    let width = out.shape[2];
                    for s in 0..batch.n_sequences() {
                        let rows = batch.sequence(s);
                        let at = (first + s) * longest * width;
                        out.values[at..at + rows.len() * width]
                            .copy_from_slice(&values[rows.start * width..rows.end * width]);
                    }
                }
                // One row per sequence, or one pattern block per sequence: in sequence order.
                _ => {
                    let per_sequence = out.values.len() / n;
                    let at = first * per_sequence;
                    out.values[at..at + values.len()].copy_from_slice(&values);
                }
            }
            Ok(())
        })?;
        // The logits are the deepest hook, so the last array; a hook too only when named.
        let logits = match (run.logits, logits_named) {
            (false, _) => None,
            (true, true) => outputs.last().cloned(),
            (true, false) => outputs.pop(),
        };
        Ok(SessionOutput { hooks: outputs, logits, lengths, stats, warnings })
    }

    /// The input's sequences, a describer of each for errors, and whether they are words.
    #[allow(clippy::type_complexity)]
    fn sequences<'a>(
        &'a self,
        run: &'a SessionRun,
        warnings: &mut Vec<String>,
    ) -> Result<(Vec<Vec<u32>>, Box<dyn Fn(usize) -> String + Sync + 'a>, bool)> {
        let tokenizer = &self.model.tokenizer;
        let config = &self.model.config;
        match &run.input {
            SessionInput::Text(text) => {
                let text = if run.prefix_space { format!(" {text}") } else { text.clone() };
                let mut ids = tokenizer.encode(&text)?;
                if ids.is_empty() {
                    bail!("the text gives no tokens; pass a text with at least one character");
                }
                cut_text(&mut ids, None, config.max_position_embeddings, warnings)?;
                Ok((vec![ids], Box::new(|_| "the text".to_string()), false))
            }
            SessionInput::Words(words) => {
                if words.is_empty() {
                    bail!("the word list is empty; pass at least one word");
                }
                let sequences = words
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        if w.trim().is_empty() {
                            bail!("word {i} of the list is empty; pass words with at least one character");
                        }
                        tokenizer.encode_word(w, run.prefix_space)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let label = move |i: usize| format!("word {:?} (item {i} of the list)", words[i]);
                Ok((sequences, Box::new(label), true))
            }
            SessionInput::Tokens(sequences) => {
                if sequences.is_empty() {
                    bail!("no token sequences given; pass at least one");
                }
                for (i, sequence) in sequences.iter().enumerate() {
                    if let Some(&id) = sequence.iter().find(|&&id| id as usize >= config.vocab_size) {
                        bail!(
                            "token id {id} in sequence {i} is not in the vocabulary (ids 0 to {})",
                            config.vocab_size - 1
                        );
                    }
                }
                Ok((sequences.clone(), Box::new(|i| format!("token sequence {i}")), false))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_padded_to_the_longest_sequence() {
        // Two sequences, one head, a batch whose longest is 2, padded to 3.
        let values = [1.0, 0.0, 0.5, 0.5, 1.0, 0.0, 0.25, 0.75];
        let out = repad_pattern(&values, &[2, 1, 2, 2], 3);
        assert_eq!(out.len(), 18);
        assert_eq!(&out[..9], &[1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&out[9..], &[1.0, 0.0, 0.0, 0.25, 0.75, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn words_are_mean_pooled_and_their_logits_take_the_last_token() {
        let hooks = [Hook::block(0, crate::model::HookPoint::MlpPre), Hook::Logits];
        assert_eq!(hook_pooling(&hooks, None, true).unwrap(), vec![Pool::Mean, Pool::Last]);
        assert_eq!(hook_pooling(&hooks, None, false).unwrap(), vec![Pool::None, Pool::None]);
        assert_eq!(hook_pooling(&hooks, Some(Pool::First), true).unwrap(), vec![Pool::First, Pool::First]);
        let err = hook_pooling(&hooks, Some(Pool::Max), true).unwrap_err().to_string();
        assert!(err.contains("does not apply to the logits"), "{err}");
    }

    #[test]
    fn a_text_is_cut_to_the_models_positions() {
        let mut warnings = Vec::new();
        let mut ids = vec![1, 2, 3, 4];
        cut_text(&mut ids, None, 3, &mut warnings).unwrap();
        assert_eq!((ids, warnings.len()), (vec![1, 2, 3], 1));
        assert!(cut_text(&mut vec![1], Some(0), 3, &mut warnings).is_err());
    }
}
