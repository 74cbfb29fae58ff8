//! `neoprobe extract`: words or a text → one hook's activations → `.npy` / `.safetensors`.

use crate::batching::{BatchLimits, Progress, Streamer};
use crate::engine::{Engine, LoadedModel};
use crate::model::{Hook, HookPlan, ModelDir};
use crate::output;
use crate::pool::{pool, Pool};
use crate::stream_out::ArrayWriter;
use crate::tokenize::{read_text, read_word_list};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::PathBuf;

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
    pub model_dir: PathBuf,
    pub input: ExtractInput,
    pub hook: String,
    /// Defaults to mean for words, none for a text.
    pub pool: Option<Pool>,
    pub prefix_space: bool,
    /// A text is cut to this many tokens (default and ceiling: the model's positions).
    pub max_tokens: Option<usize>,
    pub out: PathBuf,
    /// Tokens per GPU batch (`None`: the default for the adapter, see `batching`).
    pub batch_tokens: Option<usize>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What an extraction did.
#[derive(Clone, Debug)]
pub struct ExtractSummary {
    pub shape: Vec<usize>,
    pub n_tokens: usize,
    pub hook: Hook,
    pub adapter: String,
    /// Things the user should know (a text cut short, …).
    pub notes: Vec<String>,
}

pub fn extract(args: &ExtractArgs) -> Result<ExtractSummary> {
    output::check_writable(&args.out, &["npy", "safetensors"])?;
    let dir = ModelDir::open(&args.model_dir)?;
    let mut hook = None;
    let (model, plan) = LoadedModel::load(&dir, |config| {
        let parsed = Hook::parse(&args.hook, config)?;
        hook = Some(parsed);
        HookPlan::new(&[parsed])
    })?;
    let hook = hook.expect("the plan was made from the hook");
    let config = &model.config;
    let mut notes = Vec::new();
    let mut metadata = HashMap::new();
    // How each sequence is named in errors.
    let mut labels = Vec::new();
    let (sequences, how) = match &args.input {
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
            (sequences, args.pool.unwrap_or(Pool::Mean))
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
            labels.push(format!("text {}", path.display()));
            (vec![ids], args.pool.unwrap_or(Pool::None))
        }
    };
    let engine = Engine::new(&model.weights, None, model.load_time)?;
    let batch_tokens = BatchLimits::of(&engine).choose(args.batch_tokens, &engine.gpu.adapter_name())?;
    let width = hook.width(config);
    let n_tokens: usize = sequences.iter().map(Vec::len).sum();
    let rows = if how == Pool::None { n_tokens } else { sequences.len() };
    let shape = vec![rows, width];

    metadata.insert("token_ids".to_string(), serde_json::to_string(&sequences)?);
    metadata.insert("hook".to_string(), hook.to_string());
    metadata.insert("pooling".to_string(), how.to_string());
    metadata.insert("prefix_space".to_string(), args.prefix_space.to_string());
    metadata.insert("model_dir".to_string(), args.model_dir.display().to_string());
    metadata.insert("adapter".to_string(), engine.gpu.adapter_name());
    metadata.insert("neoprobe_version".to_string(), env!("CARGO_PKG_VERSION").to_string());
    // Rows go to disk batch by batch: memory holds one batch, whatever the input's size.
    let mut out = ArrayWriter::create(&args.out, &shape, &metadata)?;
    let streamer = Streamer { engine: &engine, plan: &plan, hook, batch_tokens };
    let progress = Progress::new(n_tokens as u64, args.progress, "extract");
    let name = |i: usize| labels[i].clone();
    streamer.run(sequences.iter().cloned().map(Ok), &progress, &name, |batch, _, rows| {
        out.write(&pool(&rows, width, batch, how))
    })?;
    out.finish()?;
    Ok(ExtractSummary { shape, n_tokens, hook, adapter: engine.gpu.adapter_name(), notes })
}
