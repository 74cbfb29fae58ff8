//! `neoprobe extract`: words or a text → the activations of any hooks → `.npy` / `.safetensors`.

use crate::engine::{Engine, LoadedModel, ModelSource};
use crate::hub::FetchOptions;
use crate::kernels::Variant;
use crate::model::{Batch, Hook, HookPlan, ModelDir};
use crate::output::{self, NamedTensor};
use crate::pool::{pool, Pool};
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
}

/// What an extraction did: what `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ExtractSummary {
    pub out: PathBuf,
    /// Every hook written, in the forward's order, with the shape of its array.
    pub hooks: Vec<HookArray>,
    pub n_tokens: usize,
    pub n_sequences: usize,
    pub model: String,
    /// The hub commit the model files came from (`None` for a local folder).
    pub commit: Option<String>,
    pub adapter: String,
    pub variant: String,
    pub seconds: ExtractTimes,
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

/// How the values of `hook` are pooled when the run asks for `how`.
fn pooling_for(hook: Hook, how: Pool) -> Result<Pool> {
    match (hook, how) {
        (Hook::Logits, Pool::Max) => bail!(
            "--pool max does not apply to the logits: the maximum of each vocabulary column over a \
             word's positions is no distribution; use last (the prediction after the word), mean, first or none"
        ),
        _ => Ok(how),
    }
}

pub fn extract(args: &ExtractArgs) -> Result<ExtractSummary> {
    let started = Instant::now();
    output::check_writable(&args.out, &["npy", "safetensors"])?;
    if args.hooks.is_empty() {
        bail!("no --hook given; name at least one hook point");
    }
    let resolved = args.model.resolve(&args.fetch, &mut |_| {})?;
    let mut hooks = Vec::new();
    let (model, plan) = LoadedModel::load(&ModelDir::open(&resolved.dir)?, |config| {
        for name in &args.hooks {
            hooks.extend(Hook::expand(name, config)?);
        }
        HookPlan::new(&hooks)
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
    let mut notes = Vec::new();
    let mut metadata = HashMap::new();
    let (sequences, default_pool) = match &args.input {
        ExtractInput::Words(path) => {
            let words = read_word_list(path)?;
            let sequences = words
                .iter()
                .map(|w| model.tokenizer.encode_word(&w.word, args.prefix_space))
                .collect::<Result<Vec<_>>>()?;
            let list: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
            metadata.insert("words".to_string(), serde_json::to_string(&list)?);
            (sequences, Pool::Mean)
        }
        ExtractInput::Text(path) => {
            let text = read_text(path)?;
            let text = if args.prefix_space { format!(" {text}") } else { text };
            let mut ids = model.tokenizer.encode(&text)?;
            if ids.is_empty() {
                bail!("text {} gives no tokens", path.display());
            }
            let ceiling = config.max_position_embeddings;
            let limit = match args.max_tokens {
                Some(0) => bail!("--max-tokens must be at least 1"),
                Some(n) if n > ceiling => {
                    notes.push(format!(
                        "--max-tokens {n} is above the model's {ceiling} positions; using {ceiling}"
                    ));
                    ceiling
                }
                Some(n) => n,
                None => ceiling,
            };
            if ids.len() > limit {
                notes.push(format!("the text has {} tokens; cut to the first {limit}", ids.len()));
                ids.truncate(limit);
            }
            metadata.insert("text".to_string(), text);
            (vec![ids], Pool::None)
        }
    };
    // Each hook's pooling, checked before the forward.
    let pooling: Vec<Pool> = hooks
        .iter()
        .map(|&hook| {
            let how = match (args.pool, hook, &args.input) {
                (Some(how), ..) => how,
                (None, Hook::Logits, ExtractInput::Words(_)) => Pool::Last,
                (None, ..) => default_pool,
            };
            pooling_for(hook, how)
        })
        .collect::<Result<_>>()?;
    let batch = Batch::pack(&sequences, config.max_position_embeddings)?;
    let engine = Engine::new(&model.weights, args.variant, model.load_time)?;
    let loaded = started.elapsed().as_secs_f64() - resolved.fetch_time.as_secs_f64();
    let (mut activations, times) = engine.forward(&batch, &plan, false)?;

    let mut arrays = Vec::new();
    for (&hook, &how) in hooks.iter().zip(&pooling) {
        let values = activations.take(hook).expect("the forward reads back every requested hook");
        let shape = activations.shape(hook).expect("every hook read back has a shape").to_vec();
        // Pooling applies to one-row-per-token hooks; the attention pattern is per sequence.
        let (shape, values) = if hook.per_token() {
            let width = shape[1];
            let pooled = pool(&values, width, &batch, how);
            (vec![pooled.len() / width, width], pooled)
        } else {
            (shape, values)
        };
        arrays.push((hook, shape, values, hook.per_token().then(|| how.to_string())));
    }

    metadata.insert("token_ids".to_string(), serde_json::to_string(&sequences)?);
    let hook_names: Vec<String> = hooks.iter().map(Hook::to_string).collect();
    metadata.insert("hooks".to_string(), serde_json::to_string(&hook_names)?);
    let pool_names: Vec<Option<String>> = arrays.iter().map(|a| a.3.clone()).collect();
    metadata.insert("pooling".to_string(), serde_json::to_string(&pool_names)?);
    metadata.insert("prefix_space".to_string(), args.prefix_space.to_string());
    metadata.insert("model".to_string(), resolved.label.clone());
    if let Some(commit) = &resolved.commit {
        metadata.insert("commit".to_string(), commit.clone());
    }
    metadata.insert("adapter".to_string(), engine.gpu.adapter_name());
    metadata.insert("kernel_variant".to_string(), engine.kernels.variant.to_string());
    metadata.insert("neoprobe_version".to_string(), env!("CARGO_PKG_VERSION").to_string());
    let bytes = if is_npy {
        let (_, shape, values, _) = &arrays[0];
        output::npy_bytes(shape, values)
    } else {
        let tensors: Vec<NamedTensor> = arrays
            .iter()
            .zip(&hook_names)
            .map(|((_, shape, values, _), name)| NamedTensor { name, shape: shape.clone(), data: values })
            .collect();
        output::safetensors_bytes(&tensors, &metadata)?
    };
    output::write_atomic(&args.out, |w| Ok(w.write_all(&bytes)?))?;
    Ok(ExtractSummary {
        out: args.out.clone(),
        hooks: arrays
            .into_iter()
            .map(|(hook, shape, _, pooling)| HookArray { hook: hook.to_string(), shape, pooling })
            .collect(),
        n_tokens: batch.n_tokens(),
        n_sequences: batch.n_sequences(),
        model: resolved.label,
        commit: resolved.commit,
        adapter: engine.gpu.adapter_name(),
        variant: engine.kernels.variant.to_string(),
        seconds: ExtractTimes {
            fetch: resolved.fetch_time.as_secs_f64(),
            load: loaded,
            forward: times.forward.as_secs_f64(),
            total: started.elapsed().as_secs_f64(),
        },
        notes,
    })
}
