//! `neoprobe extract`: words or a text → the activations of any hooks → `.npy` / `.safetensors`,
//! in GPU batches that fit the adapter, each batch's rows written to disk before the next runs.

use crate::batching::BatchLimits;
use crate::engine::{Engine, LoadedModel, ModelSource};
use crate::hub::FetchOptions;
use crate::kernels::Variant;
use crate::model::{attention_pattern_shape, Hook, HookPlan, InterventionKind, Interventions, ModelDir};
use crate::notes::Notes;
use crate::output;
use crate::pool::Pool;
use crate::session::{cut_text, expand_hooks, hook_pooling, stream_hooks, HookStream};
use crate::stream_out::{ArrayWriter, TensorsWriter};
use crate::tokenize::{read_text, read_word_list};
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// What to run through the model.
#[derive(Clone, Debug)]
pub enum ExtractInput {
    /// A word list: each word alone, one sequence per word.
    Words(PathBuf),
    /// A whole text file as one sequence.
    Text(PathBuf),
}

#[derive(Clone, Debug)]
pub struct ExtractArgs {
    pub model: ModelSource,
    pub fetch: FetchOptions,
    pub input: ExtractInput,
    /// Hook names or patterns (`blocks.*.mlp.hook_pre`); at least one.
    pub hooks: Vec<String>,
    /// Defaults to mean for words (last for the logits), none for a text.
    pub pool: Option<Pool>,
    pub prefix_space: bool,
    /// A text is cut to this many tokens (default and ceiling: the model's positions).
    pub max_tokens: Option<usize>,
    pub out: PathBuf,
    /// Kernel variant; `None`: the fastest for the adapter.
    pub variant: Option<Variant>,
    /// Tokens per GPU batch (`None`: the default for the adapter, see `batching`).
    pub batch_tokens: Option<usize>,
    /// Interventions on the way (flag kind and text, src/model/intervene.rs).
    pub interventions: Vec<(InterventionKind, String)>,
}

/// What an extraction did: what `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ExtractSummary {
    pub out: PathBuf,
    /// Every hook written, in the forward's order, with the shape of its array.
    pub hooks: Vec<HookArray>,
    pub n_tokens: usize,
    pub n_sequences: usize,
    pub n_batches: usize,
    pub model: String,
    /// The hub commit the model files came from (`None` for a local folder).
    pub commit: Option<String>,
    pub adapter: String,
    pub variant: String,
    pub seconds: ExtractTimes,
    /// The interventions applied, one per hook, as given (flag and text).
    pub interventions: Vec<String>,
    /// Things the user should know (a text cut short, …).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HookArray {
    pub hook: String,
    pub shape: Vec<usize>,
    /// How each sequence's token rows were pooled (`None`: not a per-token hook).
    pub pooling: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExtractTimes {
    /// Finding or fetching the model files.
    pub fetch: f64,
    /// Reading the model, opening the GPU, compiling, uploading.
    pub load: f64,
    pub forward: f64,
    pub total: f64,
}

pub fn extract(args: &ExtractArgs, notes: &dyn Notes) -> Result<ExtractSummary> {
    let started = Instant::now();
    output::check_writable(&args.out, &["npy", "safetensors"])?;
    if args.hooks.is_empty() {
        bail!("no --hook given; name at least one hook point");
    }
    let resolved = args.model.resolve(&args.fetch, notes)?;
    let (model, plan) = LoadedModel::load(&ModelDir::open(&resolved.dir)?, |config| {
        HookPlan::new(&expand_hooks(&args.hooks, config)?)
    })?;
    let hooks = plan.hooks().to_vec();
    let is_npy = args.out.extension().is_some_and(|e| e == "npy");
    if is_npy && hooks.len() > 1 {
        bail!(
            "{} hooks asked for but {} is a .npy file, which holds one array; write a .safetensors file (one tensor per hook) or ask for one hook",
            hooks.len(),
            args.out.display()
        );
    }
    let config = &model.config;
    let mut warnings = Vec::new();
    let mut metadata = HashMap::new();
    // How each sequence is named in errors.
    let mut labels = Vec::new();
    let (sequences, words) = match &args.input {
        ExtractInput::Words(path) => {
            let words = read_word_list(path)?;
            let sequences = words
                .iter()
                .map(|w| model.tokenizer.encode_word(&w.word, args.prefix_space))
                .collect::<Result<Vec<_>>>()?;
            let list: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
            labels = words
                .iter()
                .map(|w| format!("word {:?} (line {} of {})", w.word, w.line, path.display()))
                .collect();
            metadata.insert("words".to_string(), serde_json::to_string(&list)?);
            (sequences, true)
        }
        ExtractInput::Text(path) => {
            let text = read_text(path)?;
            let text = if args.prefix_space { format!(" {text}") } else { text };
            let mut ids = model.tokenizer.encode(&text)?;
            if ids.is_empty() {
                bail!("text {} gives no tokens", path.display());
            }
            cut_text(&mut ids, args.max_tokens, config.max_position_embeddings, &mut warnings)?;
            metadata.insert("text".to_string(), text);
            labels.push(format!("text {}", path.display()));
            (vec![ids], false)
        }
    };
    for warning in &warnings {
        notes.warn(warning);
    }
    // Each hook's pooling, checked before the forward.
    let pooling: Vec<Pool> = hook_pooling(&hooks, args.pool, words)?;
    // The interventions, read and checked against the model and the input before any GPU work.
    let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
    let plan = plan.with_interventions(Interventions::from_flags(&args.interventions, config, &lengths)?);
    let specs: Vec<String> = plan.interventions().iter().map(|i| i.spec.clone()).collect();
    if !specs.is_empty() {
        metadata.insert("interventions".to_string(), serde_json::to_string(&specs)?);
    }
    let engine = Engine::new(&model.weights, args.variant, model.load_time)?;
    let batch_tokens =
        BatchLimits::for_plan(&engine, &plan).choose(args.batch_tokens, &engine.gpu.adapter_name())?;
    let loaded = started.elapsed().as_secs_f64() - resolved.fetch_time.as_secs_f64();
    // Each hook's array shape, known before the forward: one row per token or per sequence, or
    // the attention pattern's [sequences, heads, longest, longest].
    let n_tokens: usize = sequences.iter().map(Vec::len).sum();
    let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
    let shapes: Vec<Vec<usize>> = hooks
        .iter()
        .zip(&pooling)
        .map(|(&hook, &how)| match hook.per_token() {
            true => vec![if how == Pool::None { n_tokens } else { sequences.len() }, hook.width(config)],
            false => attention_pattern_shape(sequences.len(), config, longest),
        })
        .collect();
    metadata.insert("token_ids".to_string(), serde_json::to_string(&sequences)?);
    let hook_names: Vec<String> = hooks.iter().map(Hook::to_string).collect();
    metadata.insert("hooks".to_string(), serde_json::to_string(&hook_names)?);
    let pool_names: Vec<Option<String>> =
        hooks.iter().zip(&pooling).map(|(h, how)| h.per_token().then(|| how.to_string())).collect();
    metadata.insert("pooling".to_string(), serde_json::to_string(&pool_names)?);
    metadata.insert("prefix_space".to_string(), args.prefix_space.to_string());
    metadata.insert("model".to_string(), resolved.label.clone());
    if let Some(commit) = &resolved.commit {
        metadata.insert("commit".to_string(), commit.clone());
    }
    metadata.insert("adapter".to_string(), engine.gpu.adapter_name());
    metadata.insert("kernel_variant".to_string(), engine.kernels.variant.to_string());
    metadata.insert("neoprobe_version".to_string(), env!("CARGO_PKG_VERSION").to_string());
    // Rows go to disk batch by batch: memory holds one batch, whatever the input's size.
    let mut out = if is_npy {
        Out::One(ArrayWriter::create(&args.out, &shapes[0], &metadata)?)
    } else {
        let tensors: Vec<(String, Vec<usize>)> =
            hook_names.iter().cloned().zip(shapes.iter().cloned()).collect();
        Out::Many(TensorsWriter::create(&args.out, &tensors, &metadata)?)
    };
    let stream = HookStream {
        engine: &engine,
        plan: &plan,
        hooks: &hooks,
        pooling: &pooling,
        batch_tokens,
        notes,
        label: "extract",
    };
    let name = |i: usize| labels[i].clone();
    let stats = stream_hooks(&stream, &sequences, &name, |i, _, _, values| out.write(i, &values))?;
    out.finish()?;
    Ok(ExtractSummary {
        out: args.out.clone(),
        hooks: hooks
            .iter()
            .zip(shapes)
            .zip(&pooling)
            .map(|((hook, shape), how)| HookArray {
                hook: hook.to_string(),
                shape,
                pooling: hook.per_token().then(|| how.to_string()),
            })
            .collect(),
        n_tokens,
        n_sequences: sequences.len(),
        n_batches: stats.batches,
        model: resolved.label,
        commit: resolved.commit,
        adapter: engine.gpu.adapter_name(),
        variant: engine.kernels.variant.to_string(),
        seconds: ExtractTimes {
            fetch: resolved.fetch_time.as_secs_f64(),
            load: loaded,
            forward: stats.forward.as_secs_f64(),
            total: started.elapsed().as_secs_f64(),
        },
        interventions: specs,
        notes: warnings,
    })
}

/// Where the arrays go: one `.npy` array, or one `.safetensors` tensor per hook.
enum Out {
    One(ArrayWriter),
    Many(TensorsWriter),
}

impl Out {
    fn write(&mut self, tensor: usize, values: &[f32]) -> Result<()> {
        match self {
            Out::One(writer) => writer.write(values),
            Out::Many(writer) => writer.write(tensor, values),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Out::One(writer) => writer.finish(),
            Out::Many(writer) => writer.finish(),
        }
    }
}
