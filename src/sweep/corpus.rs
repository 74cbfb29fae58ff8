//! `neoprobe sweep corpus`: the max-activating contexts of a corpus. Each text is tokenized whole
//! and cut into consecutive sequences of `context` tokens (the last one shorter; sequences never
//! span two texts), numbered across the texts in order. Sequences run in streamed batches; per
//! neuron and sequence the largest activation (its first position on ties) is what the sequence
//! scores, and the top-k sequences per neuron are kept on the fly.
//!
//! Host memory holds one text and its token ids at a time, one batch, and the `neurons × k`
//! lists: independent of the corpus's size beyond its largest text. `--shard I/N` runs the
//! sequences whose number is I modulo N; `sweep merge` puts the shards' outputs together into
//! exactly what one run writes (see `merge`).

use super::files::{Data, SweepFile};
use super::sample::{
    hist_bin, interval_of_bin, Histograms, Sample, Samples, HIST_BINS, INTERVALS, SAMPLES_PER_INTERVAL,
};
use super::topk::{check_finite, End, Entry, Extremes};
use super::vocab::summary_text;
use super::{
    check_top_k, model_metadata, sha256_bytes, SweepCommon, SweepOutcome, CONTEXTS_JSONL, CORPUS_TOPK,
    SAMPLES_JSONL,
};
use crate::batching::{BatchLimits, Streamer};
use crate::engine::{Engine, LoadedModel};
use crate::model::ModelDir;
use crate::notes::Notes;
use crate::out_dir::{check_out_dir, Staging};
use crate::output::write_atomic;
use crate::tokenize::{read_text, Tokenizer};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// The files a corpus sweep and a merge write.
pub const CORPUS_FILES: [&str; 3] = [CORPUS_TOPK, CONTEXTS_JSONL, SAMPLES_JSONL];

/// The metadata's description of the histogram and the samples (see `sample`).
pub const HISTOGRAM_RULE: &str = "every token's activation counted in 513 fixed bins: |v| < 2^-8 in the middle bin 256; otherwise by sign, octave floor(log2|v|) clamped to -8..7 and 16 bins per octave (4 mantissa bits); positive bins above 256, negative below";
pub const SAMPLE_RULE: &str = "per neuron and interval (the octave of the sequence's largest activation: 16 negative, the middle one, 16 positive), the number of sequences and the samples_per_interval sequences of smallest (splitmix64(sequence), sequence)";

/// Tokens per sequence unless told otherwise.
pub const DEFAULT_CONTEXT: usize = 128;

/// What a corpus entry belongs to: the sequence's number in the whole corpus and the position of
/// the neuron's largest activation in it.
pub type Key = (u64, u32);

/// Which sequences a run processes: those whose number is `index` modulo `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Every sequence.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with `0 ≤ I < N`.
    pub fn parse(text: &str) -> Result<Shard> {
        let malformed = || {
            anyhow!("--shard {text:?} is not I/N; write the shard's index and the number of shards, e.g. --shard 0/4 … --shard 3/4")
        };
        let (i, n) = text.split_once('/').ok_or_else(malformed)?;
        let index: usize = i.trim().parse().map_err(|_| malformed())?;
        let count: usize = n.trim().parse().map_err(|_| malformed())?;
        if count == 0 {
            bail!("--shard {text}: the number of shards must be at least 1");
        }
        if index >= count {
            bail!("--shard {text}: the index must be below the number of shards (0 to {})", count - 1);
        }
        Ok(Shard { index, count })
    }

    /// The number, in the whole corpus, of the `i`-th sequence this shard runs.
    pub fn sequence(&self, i: usize) -> u64 {
        (self.index + i * self.count) as u64
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[derive(Clone, Debug)]
pub struct CorpusArgs {
    pub common: SweepCommon,
    pub hook: String,
    pub texts: Vec<PathBuf>,
    pub context: usize,
    pub top_k: usize,
    pub shard: Shard,
}

/// A text of the corpus: where it is, what it holds, how many tokens it gives.
struct CorpusText {
    path: PathBuf,
    sha256: String,
    tokens: usize,
}

impl CorpusText {
    fn sequences(&self, context: usize) -> usize {
        self.tokens.div_ceil(context)
    }
}

/// Reads and tokenizes `path` (UTF-8, not empty).
fn tokenize_text(path: &Path, tokenizer: &Tokenizer) -> Result<(String, Vec<u32>)> {
    let text = read_text(path)?;
    let ids = tokenizer.encode(&text).with_context(|| format!("text {}", path.display()))?;
    if ids.is_empty() {
        bail!("text file {} gives no tokens", path.display());
    }
    Ok((text, ids))
}

/// One line of `contexts.jsonl`: a neuron's entry of some rank, with the whole sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextLine {
    pub neuron: usize,
    pub rank: usize,
    /// The neuron's largest activation in the sequence.
    pub value: f32,
    /// The sequence's number in the corpus.
    pub sequence: u64,
    /// Where in `token_ids` the largest activation is.
    pub position: usize,
    /// The neuron's activation at every token of the sequence.
    pub activations: Vec<f32>,
    /// The whole sequence, from its first token.
    pub token_ids: Vec<u32>,
    /// Each token's text.
    pub tokens: Vec<String>,
}

/// One line of `samples.jsonl`: a sequence sampled for a neuron in one activation interval
/// (see `sample`), with the whole sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleLine {
    pub neuron: usize,
    /// The interval of `value` (`sample::interval_bounds`).
    pub interval: usize,
    /// The sample's place in its interval, smallest hash first.
    pub slot: usize,
    /// The neuron's largest activation in the sequence.
    pub value: f32,
    pub sequence: u64,
    pub position: usize,
    pub activations: Vec<f32>,
    pub token_ids: Vec<u32>,
    pub tokens: Vec<String>,
}

/// Per neuron and sequence, the neuron's activation at each token of the sequence: kept for the
/// sequences the lists and samples hold.
pub type Columns = HashMap<(usize, u64), Vec<f32>>;

/// What a corpus sweep keeps per neuron while batches arrive, and what its files hold.
#[derive(Clone, Debug)]
pub struct CorpusLists {
    pub top: Extremes<Key>,
    pub histograms: Histograms,
    pub samples: Samples,
    pub columns: Columns,
}

impl CorpusLists {
    pub fn new(k: usize, width: usize) -> CorpusLists {
        CorpusLists {
            top: Extremes::new(End::Top, k, width),
            histograms: Histograms::new(width),
            samples: Samples::new(SAMPLES_PER_INTERVAL, width),
            columns: HashMap::new(),
        }
    }

    /// Whether `neuron`'s lists still hold `sequence`, whose peak is `value`.
    fn holds(&self, neuron: usize, sequence: u64, value: f32) -> bool {
        self.top.list(neuron).iter().any(|e| e.key.0 == sequence)
            || self
                .samples
                .list(neuron, interval_of_bin(hist_bin(value)))
                .iter()
                .any(|s| s.sequence == sequence)
    }

    /// Drops the columns of sequences that fell out of every list.
    fn prune(&mut self) {
        let columns = std::mem::take(&mut self.columns);
        self.columns = columns
            .into_iter()
            .filter(|((neuron, sequence), column)| {
                let peak = column.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                self.holds(*neuron, *sequence, peak)
            })
            .collect();
    }

    /// Adds another part's lists (a shard of the same sweep).
    pub fn absorb(&mut self, other: &CorpusLists) {
        self.top.absorb(&other.top);
        self.histograms.absorb(&other.histograms);
        self.samples.absorb(&other.samples);
        self.columns.extend(other.columns.iter().map(|(k, v)| (*k, v.clone())));
    }

    /// Every sequence the lists and samples refer to.
    fn sequences(&self) -> BTreeSet<u64> {
        let width = self.top.width();
        let mut out = BTreeSet::new();
        for n in 0..width {
            out.extend(self.top.list(n).iter().map(|e| e.key.0));
            for i in 0..INTERVALS {
                out.extend(self.samples.list(n, i).iter().map(|s| s.sequence));
            }
        }
        out
    }
}

/// A sequence's tokens, as ids and as text.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceTokens {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
}

pub fn sweep_corpus(args: &CorpusArgs, notes: &dyn Notes) -> Result<SweepOutcome> {
    let c = &args.common;
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if args.context == 0 {
        bail!("--context must be at least 1 token");
    }
    if args.texts.is_empty() {
        bail!("no text to sweep; pass --text FILE (repeatable)");
    }
    let files = CORPUS_FILES;
    check_out_dir(&c.out_dir, c.force, &files, "the sweep's files")?;
    let resolved = c.model.resolve(&c.fetch, notes)?;
    let (model, plan, hook) = LoadedModel::load_for_hook(&ModelDir::open(&resolved.dir)?, &args.hook)?;
    let config = &model.config;
    check_top_k(args.top_k, config.vocab_size)?;
    if args.context > config.max_position_embeddings {
        bail!(
            "--context {} is above the model's {} positions; choose at most {}",
            args.context,
            config.max_position_embeddings,
            config.max_position_embeddings
        );
    }

    // Every text is read, checked and counted before any GPU work.
    let mut texts = Vec::new();
    for path in &args.texts {
        let (text, ids) = tokenize_text(path, &model.tokenizer)?;
        texts.push(CorpusText {
            path: path.clone(),
            sha256: sha256_bytes(text.as_bytes()),
            tokens: ids.len(),
        });
    }
    let n_sequences: usize = texts.iter().map(|t| t.sequences(args.context)).sum();
    let n_tokens: usize = texts.iter().map(|t| t.tokens).sum();
    if args.top_k > n_sequences {
        bail!(
            "--top-k {} is above the {n_sequences} sequences of {} tokens the corpus makes; choose at most {n_sequences} or a smaller --context",
            args.top_k,
            args.context
        );
    }
    let longest = texts.iter().map(|t| t.tokens.min(args.context)).max().unwrap_or(0);
    let shard_tokens: usize = (0..n_sequences)
        .filter(|s| s % args.shard.count == args.shard.index)
        .map(|s| sequence_length(&texts, args.context, s))
        .sum();

    let engine = Engine::new(&model.weights, c.variant, model.load_time)?;
    let adapter = engine.gpu.adapter_name();
    let batch_tokens = BatchLimits::of(&engine).choose(c.batch_tokens, &adapter)?;
    if longest > batch_tokens {
        bail!(
            "a batch of {batch_tokens} tokens (--batch-tokens) cannot hold one sequence of {longest} tokens (--context {}); raise --batch-tokens or lower --context",
            args.context
        );
    }
    notes.step(&format!(
        "{n_sequences} sequences of up to {} tokens{} through {hook} on {adapter}, {batch_tokens} per batch",
        args.context,
        if args.shard.count > 1 {
            format!(" (shard {} runs every {}th)", args.shard, args.shard.count)
        } else {
            String::new()
        }
    ));

    let width = hook.width(config);
    let mut lists = CorpusLists::new(args.top_k, width);
    let streamer = Streamer {
        engine: &engine,
        plan: &plan,
        hook,
        batch_tokens,
        notes,
        label: "corpus",
        total_tokens: shard_tokens as u64,
        resume: None,
    };
    let shard = args.shard;
    let sequences = ShardSequences::new(&texts, &model.tokenizer, args.context, shard);
    let name = |i: usize| format!("sequence {}", shard.sequence(i));
    let mut maxima = vec![0.0f32; width];
    let mut positions = vec![0u32; width];
    let stats = streamer.run(sequences, &name, |batch, first, rows| {
        for s in 0..batch.n_sequences() {
            let range = batch.sequence(s);
            let sequence = shard.sequence(first + s);
            let seq_rows = &rows[range.start * width..range.end * width];
            check_finite(seq_rows, width, &|p| format!("position {p} of sequence {sequence}"))?;
            maxima.copy_from_slice(&seq_rows[..width]);
            positions.fill(0);
            for row in seq_rows.chunks_exact(width) {
                lists.histograms.add_row(row);
            }
            for (p, row) in seq_rows.chunks_exact(width).enumerate().skip(1) {
                for ((m, at), &v) in maxima.iter_mut().zip(&mut positions).zip(row) {
                    if v > *m {
                        *m = v;
                        *at = p as u32;
                    }
                }
            }
            for (neuron, (&value, &position)) in maxima.iter().zip(&positions).enumerate() {
                let listed = lists.top.offer(neuron, value, (sequence, position));
                let sampled = lists.samples.offer(neuron, Sample { sequence, position, value });
                if listed || sampled {
                    let column = seq_rows.chunks_exact(width).map(|row| row[neuron]).collect();
                    lists.columns.insert((neuron, sequence), column);
                }
            }
        }
        lists.prune();
        Ok(())
    })?;

    // The sequences the lists refer to, tokenized again (only those are kept).
    let contexts = sequences_by_number(&texts, &model.tokenizer, args.context, &lists.sequences())?;

    let mut metadata = model_metadata(&resolved)?;
    let listed = |f: &dyn Fn(&CorpusText) -> serde_json::Value| -> Result<String> {
        Ok(serde_json::to_string(&texts.iter().map(f).collect::<Vec<_>>())?)
    };
    for (key, value) in [
        ("sweep", "corpus".to_string()),
        ("hook", hook.to_string()),
        ("top_k", args.top_k.to_string()),
        ("context", args.context.to_string()),
        ("texts", listed(&|t| t.path.display().to_string().into())?),
        ("texts_sha256", listed(&|t| t.sha256.clone().into())?),
        ("texts_tokens", listed(&|t| t.tokens.into())?),
        ("n_sequences", n_sequences.to_string()),
        ("n_tokens", n_tokens.to_string()),
        ("value", "per sequence, the neuron's largest activation (its first position on ties)".to_string()),
        ("order", "value descending, then sequence number ascending".to_string()),
        ("histogram", HISTOGRAM_RULE.to_string()),
        ("samples", SAMPLE_RULE.to_string()),
        ("samples_per_interval", SAMPLES_PER_INTERVAL.to_string()),
    ] {
        metadata.insert(key.to_string(), value);
    }
    if shard.count > 1 {
        metadata.insert("shard".to_string(), shard.to_string());
    }
    let staging = Staging::create(&c.out_dir)?;
    write_corpus_files(&staging.path, metadata, &lists, &contexts)?;
    let written = staging.publish(&c.out_dir, &files)?;
    Ok(SweepOutcome {
        summary: summary_text(&format!("corpus sweep of {hook}"), &stats, batch_tokens, &adapter, &written),
        files: written,
        streamed: Some((stats, batch_tokens)),
    })
}

/// The length of sequence `s` of the corpus.
fn sequence_length(texts: &[CorpusText], context: usize, mut s: usize) -> usize {
    for t in texts {
        let n = t.sequences(context);
        if s < n {
            return (t.tokens - s * context).min(context);
        }
        s -= n;
    }
    0
}

/// The sequences a shard runs, in order, text by text: one text's ids in memory at a time.
struct ShardSequences<'a> {
    texts: &'a [CorpusText],
    tokenizer: &'a Tokenizer,
    context: usize,
    shard: Shard,
    /// The text being cut, its ids and the number of its first sequence.
    text: usize,
    ids: Vec<u32>,
    first_number: usize,
    /// The next sequence's number in the corpus.
    next: usize,
}

impl<'a> ShardSequences<'a> {
    fn new(texts: &'a [CorpusText], tokenizer: &'a Tokenizer, context: usize, shard: Shard) -> Self {
        ShardSequences {
            texts,
            tokenizer,
            context,
            shard,
            text: 0,
            ids: Vec::new(),
            first_number: 0,
            next: shard.index,
        }
    }
}

impl Iterator for ShardSequences<'_> {
    type Item = Result<Vec<u32>>;

    fn next(&mut self) -> Option<Result<Vec<u32>>> {
        loop {
            let t = self.texts.get(self.text)?;
            let in_text = t.sequences(self.context);
            if self.next < self.first_number + in_text {
                if self.ids.is_empty() {
                    match tokenize_text(&t.path, self.tokenizer) {
                        Ok((_, ids)) if ids.len() == t.tokens => self.ids = ids,
                        Ok(_) => {
                            return Some(Err(anyhow!("text {} changed during the sweep", t.path.display())))
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
                let start = (self.next - self.first_number) * self.context;
                let end = (start + self.context).min(self.ids.len());
                self.next += self.shard.count;
                return Some(Ok(self.ids[start..end].to_vec()));
            }
            self.first_number += in_text;
            self.text += 1;
            self.ids = Vec::new();
        }
    }
}

/// The tokens of the sequences numbered `wanted`, read again from the texts.
fn sequences_by_number(
    texts: &[CorpusText],
    tokenizer: &Tokenizer,
    context: usize,
    wanted: &BTreeSet<u64>,
) -> Result<HashMap<u64, SequenceTokens>> {
    let mut out = HashMap::new();
    let mut first = 0u64;
    for t in texts {
        let n = t.sequences(context) as u64;
        let here: Vec<u64> = wanted.range(first..first + n).copied().collect();
        if !here.is_empty() {
            let (_, ids) = tokenize_text(&t.path, tokenizer)?;
            if ids.len() != t.tokens {
                bail!("text {} changed during the sweep", t.path.display());
            }
            for s in here {
                let start = (s - first) as usize * context;
                let seq = ids[start..(start + context).min(ids.len())].to_vec();
                let tokens = seq.iter().map(|&id| tokenizer.token_text(id)).collect();
                out.insert(s, SequenceTokens { ids: seq, tokens });
            }
        }
        first += n;
    }
    Ok(out)
}

/// Writes `corpus_topk.safetensors`, `contexts.jsonl` and `samples.jsonl` into `dir`: what a
/// run and a merge both write, from the lists and the tokens of the sequences they name. Lists
/// shorter than `k` (a shard with fewer sequences) are padded with value −inf, sequence and
/// position −1; so are the samples of intervals with fewer sequences than their size.
pub(crate) fn write_corpus_files(
    dir: &Path,
    metadata: HashMap<String, String>,
    lists: &CorpusLists,
    contexts: &HashMap<u64, SequenceTokens>,
) -> Result<()> {
    let top = &lists.top;
    let (width, k) = (top.width(), top.k);
    let tokens_of = |sequence: u64| {
        contexts.get(&sequence).ok_or_else(|| anyhow!("the tokens of sequence {sequence} are missing"))
    };
    let column_of =
        |neuron: usize, sequence: u64| {
            lists.columns.get(&(neuron, sequence)).cloned().ok_or_else(|| {
                anyhow!("the activations of neuron {neuron} over sequence {sequence} are missing")
            })
        };
    let mut values = Vec::with_capacity(width * k);
    let mut sequences = Vec::with_capacity(width * k);
    let mut positions = Vec::with_capacity(width * k);
    let mut lines = String::new();
    for neuron in 0..width {
        let list = top.list(neuron);
        for rank in 0..k {
            match list.get(rank) {
                Some(&Entry { value, key: (sequence, position) }) => {
                    values.push(value);
                    sequences.push(sequence as i64);
                    positions.push(position as i64);
                    let tokens = tokens_of(sequence)?;
                    let line = ContextLine {
                        neuron,
                        rank,
                        value,
                        sequence,
                        position: position as usize,
                        activations: column_of(neuron, sequence)?,
                        token_ids: tokens.ids.clone(),
                        tokens: tokens.tokens.clone(),
                    };
                    lines.push_str(&serde_json::to_string(&line)?);
                    lines.push('\n');
                }
                None => {
                    values.push(f32::NEG_INFINITY);
                    sequences.push(-1);
                    positions.push(-1);
                }
            }
        }
    }
    let s = lists.samples.k;
    let mut sample_values = Vec::with_capacity(width * INTERVALS * s);
    let mut sample_sequences = Vec::with_capacity(width * INTERVALS * s);
    let mut sample_positions = Vec::with_capacity(width * INTERVALS * s);
    let mut sample_lines = String::new();
    for neuron in 0..width {
        for interval in 0..INTERVALS {
            let list = lists.samples.list(neuron, interval);
            for slot in 0..s {
                match list.get(slot) {
                    Some(&Sample { sequence, position, value }) => {
                        sample_values.push(value);
                        sample_sequences.push(sequence as i64);
                        sample_positions.push(position as i64);
                        let tokens = tokens_of(sequence)?;
                        let line = SampleLine {
                            neuron,
                            interval,
                            slot,
                            value,
                            sequence,
                            position: position as usize,
                            activations: column_of(neuron, sequence)?,
                            token_ids: tokens.ids.clone(),
                            tokens: tokens.tokens.clone(),
                        };
                        sample_lines.push_str(&serde_json::to_string(&line)?);
                        sample_lines.push('\n');
                    }
                    None => {
                        sample_values.push(f32::NEG_INFINITY);
                        sample_sequences.push(-1);
                        sample_positions.push(-1);
                    }
                }
            }
        }
    }
    let mut file = SweepFile { metadata, ..SweepFile::default() };
    file.insert("values", vec![width, k], Data::F32(values));
    file.insert("sequence", vec![width, k], Data::I64(sequences));
    file.insert("position", vec![width, k], Data::I64(positions));
    file.insert("histogram", vec![width, HIST_BINS], Data::I64(lists.histograms.counts.clone()));
    file.insert("sample_count", vec![width, INTERVALS], Data::I64(lists.samples.counts.clone()));
    file.insert("sample_value", vec![width, INTERVALS, s], Data::F32(sample_values));
    file.insert("sample_sequence", vec![width, INTERVALS, s], Data::I64(sample_sequences));
    file.insert("sample_position", vec![width, INTERVALS, s], Data::I64(sample_positions));
    file.write(&dir.join(CORPUS_TOPK))?;
    write_atomic(&dir.join(CONTEXTS_JSONL), |w| Ok(w.write_all(lines.as_bytes())?))?;
    write_atomic(&dir.join(SAMPLES_JSONL), |w| Ok(w.write_all(sample_lines.as_bytes())?))
}

/// A JSON-lines file read back: each line, in file order.
fn read_lines<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                anyhow!("{} line {} is not a {what} line ({e}); run the sweep again", path.display(), i + 1)
            })
        })
        .collect()
}

/// `contexts.jsonl` read back: each line, in file order.
pub fn read_contexts(path: &Path) -> Result<Vec<ContextLine>> {
    read_lines(path, "context")
}

/// `samples.jsonl` read back: each line, in file order.
pub fn read_samples(path: &Path) -> Result<Vec<SampleLine>> {
    read_lines(path, "sample")
}

/// A corpus sweep's output read back: its lists and the tokens of the sequences they name.
pub struct CorpusOutput {
    pub file: SweepFile,
    pub top: Extremes<Key>,
    pub contexts: HashMap<u64, SequenceTokens>,
    /// The top lists again, with the histograms, samples and activation columns.
    pub lists: CorpusLists,
    /// `contexts.jsonl` and `samples.jsonl`, in file order.
    pub context_lines: Vec<ContextLine>,
    pub sample_lines: Vec<SampleLine>,
}

impl CorpusOutput {
    /// Reads `dir`'s `corpus_topk.safetensors`, `contexts.jsonl` and `samples.jsonl`, checking
    /// that they agree.
    pub fn read(dir: &Path) -> Result<CorpusOutput> {
        let path = dir.join(CORPUS_TOPK);
        if !path.is_file() {
            bail!("{} has no {CORPUS_TOPK}; pass a folder written by neoprobe sweep corpus", dir.display());
        }
        let file = SweepFile::read(&path)?;
        let shape = file.tensors.get("values").map(|t| t.shape.clone()).ok_or_else(|| {
            anyhow!("{} has no tensor values; was it written by neoprobe sweep corpus?", path.display())
        })?;
        if shape.len() != 2 || shape[1] == 0 {
            bail!("tensor values of {} has shape {shape:?}, expected [neurons, k]", path.display());
        }
        let (width, k) = (shape[0], shape[1]);
        let values = file.f32s("values", &shape, &path)?;
        let sequences = file.i64s("sequence", &shape, &path)?;
        let positions = file.i64s("position", &shape, &path)?;
        if !file.tensors.contains_key("histogram") {
            bail!(
                "{} has no activation histogram (an older neoprobe wrote it); run the sweep again",
                path.display()
            );
        }
        let s = file.meta_usize("samples_per_interval", &path)?;
        let mut lists = CorpusLists::new(k, width);
        lists.samples = Samples::new(s, width);
        for neuron in 0..width {
            for rank in 0..k {
                let at = neuron * k + rank;
                if sequences[at] >= 0 {
                    lists.top.offer(neuron, values[at], (sequences[at] as u64, positions[at] as u32));
                }
            }
        }
        lists.histograms.counts = file.i64s("histogram", &[width, HIST_BINS], &path)?.to_vec();
        lists.samples.counts = file.i64s("sample_count", &[width, INTERVALS], &path)?.to_vec();
        let sample_shape = [width, INTERVALS, s];
        let sample_values = file.f32s("sample_value", &sample_shape, &path)?;
        let sample_sequences = file.i64s("sample_sequence", &sample_shape, &path)?;
        let sample_positions = file.i64s("sample_position", &sample_shape, &path)?;
        for neuron in 0..width {
            for interval in 0..INTERVALS {
                for slot in 0..s {
                    let at = (neuron * INTERVALS + interval) * s + slot;
                    if sample_sequences[at] >= 0 {
                        let sample = Sample {
                            sequence: sample_sequences[at] as u64,
                            position: sample_positions[at] as u32,
                            value: sample_values[at],
                        };
                        lists.samples.restore(neuron, interval, sample);
                    }
                }
            }
        }
        let disagree = |other: &Path, neuron: usize, what: &str| {
            anyhow!(
                "{} and {} disagree about neuron {neuron}'s {what}; run the sweep again",
                path.display(),
                other.display()
            )
        };
        let contexts_path = dir.join(CONTEXTS_JSONL);
        let context_lines = read_contexts(&contexts_path)?;
        let mut contexts = HashMap::new();
        let mut by_entry: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        for line in &context_lines {
            if line.activations.len() != line.token_ids.len() {
                return Err(disagree(&contexts_path, line.neuron, "activations"));
            }
            by_entry.insert((line.neuron, line.rank), line.sequence);
            lists.columns.insert((line.neuron, line.sequence), line.activations.clone());
            contexts.insert(
                line.sequence,
                SequenceTokens { ids: line.token_ids.clone(), tokens: line.tokens.clone() },
            );
        }
        for neuron in 0..width {
            for (rank, e) in lists.top.list(neuron).iter().enumerate() {
                if by_entry.get(&(neuron, rank)) != Some(&e.key.0) {
                    return Err(disagree(&contexts_path, neuron, &format!("entry {rank}")));
                }
            }
        }
        let samples_path = dir.join(SAMPLES_JSONL);
        let sample_lines = read_samples(&samples_path)?;
        let mut by_sample: BTreeMap<(usize, usize, usize), u64> = BTreeMap::new();
        for line in &sample_lines {
            if line.activations.len() != line.token_ids.len() {
                return Err(disagree(&samples_path, line.neuron, "activations"));
            }
            by_sample.insert((line.neuron, line.interval, line.slot), line.sequence);
            lists.columns.insert((line.neuron, line.sequence), line.activations.clone());
            contexts.insert(
                line.sequence,
                SequenceTokens { ids: line.token_ids.clone(), tokens: line.tokens.clone() },
            );
        }
        for neuron in 0..width {
            for interval in 0..INTERVALS {
                for (slot, e) in lists.samples.list(neuron, interval).iter().enumerate() {
                    if by_sample.get(&(neuron, interval, slot)) != Some(&e.sequence) {
                        return Err(disagree(&samples_path, neuron, &format!("sample {interval}/{slot}")));
                    }
                }
            }
        }
        let top = lists.top.clone();
        Ok(CorpusOutput { file, top, contexts, lists, context_lines, sample_lines })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_number_their_sequences() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
        assert_eq!(Shard::parse("0/1").unwrap(), Shard::WHOLE);
        assert_eq!(Shard { index: 2, count: 5 }.sequence(3), 17);
        for bad in ["", "1", "a/2", "1/b", "-1/2", "1/2/3"] {
            assert!(Shard::parse(bad).unwrap_err().to_string().contains("is not I/N"), "{bad}");
        }
        assert!(Shard::parse("2/2").unwrap_err().to_string().contains("below the number of shards"));
        assert!(Shard::parse("0/0").unwrap_err().to_string().contains("at least 1"));
    }

    #[test]
    fn sequence_lengths_restart_with_each_text() {
        let text = |tokens| CorpusText { path: PathBuf::new(), sha256: String::new(), tokens };
        let texts = [text(10), text(3)];
        let lengths: Vec<usize> = (0..4).map(|s| sequence_length(&texts, 4, s)).collect();
        assert_eq!(lengths, vec![4, 4, 2, 3]);
    }
}
