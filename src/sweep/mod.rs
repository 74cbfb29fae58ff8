//! Sweeps over many inputs, streamed in GPU batches with per-neuron top-k kept on the fly:
//! every token of the vocabulary alone ([`vocab`]), the max-activating contexts of a corpus
//! ([`corpus`], shardable, with [`merge`]), and each neuron's direct effect on the logits
//! ([`logits`]). Design and file formats: docs/sweeps.md.

pub mod corpus;
pub mod files;
pub mod logits;
pub mod merge;
pub mod sample;
pub mod topk;
pub mod vocab;

use crate::batching::StreamStats;
use crate::engine::{ModelSource, ResolvedModel};
use crate::hub::FetchOptions;
use crate::kernels::Variant;
use crate::model::ModelDir;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The files each sweep writes into its output folder.
pub const VOCAB_TOPK: &str = "vocab_topk.safetensors";
pub const VOCAB_MD: &str = "vocab.md";
pub const CORPUS_TOPK: &str = "corpus_topk.safetensors";
pub const CONTEXTS_JSONL: &str = "contexts.jsonl";
pub const SAMPLES_JSONL: &str = "samples.jsonl";
pub const LOGITS_TOPK: &str = "logits_topk.safetensors";
pub const LOGITS_MD: &str = "logits.md";

/// Entries kept per neuron unless told otherwise.
pub const DEFAULT_TOP_K: usize = 20;

/// What every sweep that runs a model is told besides its own options.
#[derive(Clone, Debug)]
pub struct SweepCommon {
    pub model: ModelSource,
    /// How to reach the hub (only for [`ModelSource::Hub`]).
    pub fetch: FetchOptions,
    pub out_dir: PathBuf,
    /// Write into an output folder that already holds files (replacing the sweep's files).
    pub force: bool,
    /// Tokens per GPU batch (`None`: the adapter's default, see `batching`).
    pub batch_tokens: Option<usize>,
    /// Kernel variant; `None`: the best for the adapter.
    pub variant: Option<Variant>,
}

/// What a sweep did.
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// A few lines for stdout: what was swept, how fast.
    pub summary: String,
    /// Every file written, at its final place.
    pub files: Vec<PathBuf>,
    /// The streamed batches and their size (the activation sweeps).
    pub streamed: Option<(StreamStats, usize)>,
}

/// Checks `--top-k` against the model's vocabulary.
pub(crate) fn check_top_k(top_k: usize, vocab_size: usize) -> Result<()> {
    if top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if top_k > vocab_size {
        bail!("--top-k {top_k} is above the model's vocabulary of {vocab_size} tokens; choose at most {vocab_size}");
    }
    Ok(())
}

/// The metadata every sweep file carries about its model: `model` (hub id or folder as given),
/// `revision` and `commit` for hub models, `model_sha256` ([`ModelDir::weights_sha256`]: what
/// identifies the model when shards are merged, wherever each loaded it from), and the neoprobe
/// version.
pub(crate) fn model_metadata(model: &ResolvedModel) -> Result<HashMap<String, String>> {
    let mut metadata = HashMap::new();
    metadata.insert("model".to_string(), model.label.clone());
    if let (Some(revision), Some(commit)) = (&model.revision, &model.commit) {
        metadata.insert("revision".to_string(), revision.clone());
        metadata.insert("commit".to_string(), commit.clone());
    }
    metadata.insert("model_sha256".to_string(), ModelDir::open(&model.dir)?.weights_sha256()?);
    metadata.insert("neoprobe_version".to_string(), env!("CARGO_PKG_VERSION").to_string());
    Ok(metadata)
}

/// The SHA-256 of a file, in hex, read in blocks (the page cache holds it, not this process).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(hex(context.finish().as_ref()))
}

/// The SHA-256 of bytes, in hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token as a person reads it in a Markdown table: quoted, control characters escaped (so a
/// leading space or a newline shows), Markdown's special characters escaped.
pub fn token_cell(text: &str) -> String {
    crate::text::md(&format!("{text:?}"))
}
