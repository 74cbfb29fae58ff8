//! `neoprobe sweep vocab|corpus|merge|logits`: per neuron what it responds to and what it writes.

use super::model_args::ModelArgs;
use super::terminal::Terminal;
use clap::{Args, Subcommand};
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::model::{DEFAULT_HOOK, DEFAULT_LAYER};
use neoprobe::sweep::corpus::{sweep_corpus, CorpusArgs, Shard, DEFAULT_CONTEXT};
use neoprobe::sweep::logits::{sweep_logits, LogitsArgs};
use neoprobe::sweep::merge::{merge, MergeArgs};
use neoprobe::sweep::vocab::{sweep_vocab, VocabArgs};
use neoprobe::sweep::{SweepCommon, SweepOutcome, DEFAULT_TOP_K};
use std::path::PathBuf;

#[derive(Args)]
pub struct SweepCli {
    #[command(subcommand)]
    pub command: SweepCommand,
}

#[derive(Subcommand)]
pub enum SweepCommand {
    /// Every token of the vocabulary alone: per neuron its top and bottom tokens, mean and SD
    ///
    /// Runs every token id 0..vocab_size-1 as a one-token sequence (a word alone, as the
    /// challenge runs its words) up to --hook, in GPU batches, keeping per neuron the top-k and
    /// bottom-k tokens and the running mean and SD; the [tokens × neurons] matrix is never held.
    ///
    /// With --prefix-space each id's text gets one leading space and is tokenized again; where
    /// that is one token (dog → " dog") it runs, listed under its own id; where it is several
    /// (a token that already starts with a space, a partial UTF-8 character, a spaced form not
    /// in the vocabulary) the id is left out and counted in the metadata's `skipped`.
    ///
    /// Files written into --out-dir (all at once, after the whole run succeeded):
    ///   vocab_topk.safetensors  top_ids I32 [neurons, K] with top_values F32 (descending),
    ///                           bottom_ids, bottom_values (ascending), mean and std F32
    ///                           [neurons] (SD with ddof 1); metadata: model, model_sha256,
    ///                           hook, top_k, prefix_space, n_tokens, skipped, order
    ///   vocab.md                the top tokens of the most selective neurons
    #[command(verbatim_doc_comment)]
    Vocab(VocabCli),
    /// The max-activating contexts of a corpus, per neuron; shardable across machines
    ///
    /// Cuts each text (tokenized whole) into consecutive sequences of --context tokens (the
    /// last one shorter; a sequence never spans two texts), numbered across the texts in
    /// order, and runs them in GPU batches. A sequence scores, for each neuron, its largest
    /// activation (the first position on ties); the top-k sequences per neuron are kept on the
    /// fly, so memory does not grow with the corpus.
    ///
    /// --shard I/N runs only the sequences whose number is I modulo N; `neoprobe sweep merge`
    /// combines the N outputs into exactly what one run writes.
    ///
    /// Files written into --out-dir (all at once, after the whole run succeeded):
    ///   corpus_topk.safetensors  values F32 [neurons, K] (descending, ties by sequence number),
    ///                            sequence and position I64 [neurons, K] (a shard with fewer
    ///                            than K sequences pads with value -inf and -1); for the neuron
    ///                            pages histogram I64 [neurons, 513] (every token's activation
    ///                            in fixed bins), sample_count I64 [neurons, 33] and
    ///                            sample_value, sample_sequence, sample_position [neurons, 33,
    ///                            S] (sequences sampled per interval of their peak); metadata:
    ///                            model, model_sha256, hook, top_k, context, texts and their
    ///                            sha256 and token counts, n_sequences, shard
    ///   contexts.jsonl           one line per neuron and rank: neuron, rank, value, sequence,
    ///                            position (of the maximum in token_ids), activations (the
    ///                            neuron's value at each token), token_ids (the whole sequence
    ///                            from its first token), tokens (their texts)
    ///   samples.jsonl            one line per sampled sequence: neuron, interval, slot and the
    ///                            fields of contexts.jsonl
    #[command(verbatim_doc_comment)]
    Corpus(CorpusCli),
    /// Combine the outputs of every `sweep corpus --shard I/N` into what one run writes
    ///
    /// The shards must be of one sweep (same model by content, hook, top-k, context and texts)
    /// and include every I from 0 to N-1 exactly once.
    Merge(MergeCli),
    /// What each MLP neuron of a block writes: the tokens it promotes and suppresses directly
    ///
    /// Direct logit attribution of each neuron n of block --layer: c_proj.weight[:, n] scaled
    /// by ln_f's weight (γ) and projected on the tied unembedding wte, computed on the GPU with
    /// wte in chunks that fit the adapter. It ignores every later layer, ln_f's normalisation
    /// and its bias.
    ///
    /// Files written into --out-dir (all at once, after the whole run succeeded):
    ///   logits_topk.safetensors  top_ids I32 [neurons, K] with top_values F32 (descending),
    ///                            bottom_ids, bottom_values (ascending); metadata: model,
    ///                            model_sha256, layer, top_k, method
    ///   logits.md                promoted and suppressed tokens of the strongest neurons
    #[command(verbatim_doc_comment)]
    Logits(LogitsCli),
}

/// Where a sweep writes.
#[derive(Args)]
pub struct OutCli {
    /// Output folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing the sweep's files there.
    #[arg(long)]
    force: bool,
}

/// Where an activation sweep writes, and how it runs.
#[derive(Args)]
pub struct RunCli {
    #[command(flatten)]
    out: OutCli,
    /// Tokens per GPU batch; sequences are never split [default: from the adapter's limits].
    #[arg(long, value_name = "N")]
    batch_tokens: Option<usize>,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    kernel_variant: Option<Variant>,
}

#[derive(Args)]
pub struct VocabCli {
    #[command(flatten)]
    model: ModelArgs,
    /// Hook point (TransformerLens name, or transformer.h.L.mlp.c_fc).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_HOOK)]
    hook: String,
    /// Run each token's text after one space (see above for the ids this leaves out).
    #[arg(long)]
    prefix_space: bool,
    /// Tokens kept per neuron at each end.
    #[arg(long, value_name = "K", default_value_t = DEFAULT_TOP_K)]
    top_k: usize,
    #[command(flatten)]
    run: RunCli,
}

#[derive(Args)]
pub struct CorpusCli {
    #[command(flatten)]
    model: ModelArgs,
    /// UTF-8 text file(s) of the corpus, in order (repeat --text, or list several after it).
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    text: Vec<PathBuf>,
    /// Hook point (TransformerLens name, or transformer.h.L.mlp.c_fc).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_HOOK)]
    hook: String,
    /// Tokens per sequence (at most the model's max_position_embeddings).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONTEXT)]
    context: usize,
    /// Sequences kept per neuron.
    #[arg(long, value_name = "K", default_value_t = DEFAULT_TOP_K)]
    top_k: usize,
    /// Run only the sequences whose number is I modulo N (0 ≤ I < N), for a job array; combine
    /// the N outputs with `neoprobe sweep merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    #[command(flatten)]
    run: RunCli,
}

#[derive(Args)]
pub struct MergeCli {
    /// Output folder for the merged files; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing the merged files there.
    #[arg(long)]
    force: bool,
    /// The output folders of the shards (every I of one N).
    #[arg(value_name = "SHARD_DIR", required = true)]
    shard_dirs: Vec<PathBuf>,
}

#[derive(Args)]
pub struct LogitsCli {
    #[command(flatten)]
    model: ModelArgs,
    /// The block whose MLP neurons are read.
    #[arg(long, value_name = "L", default_value_t = DEFAULT_LAYER)]
    layer: usize,
    /// Tokens kept per neuron at each end.
    #[arg(long, value_name = "K", default_value_t = DEFAULT_TOP_K)]
    top_k: usize,
    #[command(flatten)]
    out: OutCli,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    kernel_variant: Option<Variant>,
}

fn common(
    model: ModelArgs,
    out: OutCli,
    batch_tokens: Option<usize>,
    variant: Option<Variant>,
) -> SweepCommon {
    SweepCommon {
        model: model.source(),
        fetch: FetchOptions::default(),
        out_dir: out.out_dir,
        force: out.force,
        batch_tokens,
        variant,
    }
}

/// Runs a `sweep` subcommand: the summary to stdout; progress and notes to stderr.
pub fn run(cli: SweepCli) -> anyhow::Result<()> {
    let notes = Terminal::new();
    let outcome: SweepOutcome = match cli.command {
        SweepCommand::Vocab(a) => sweep_vocab(
            &VocabArgs {
                common: common(a.model, a.run.out, a.run.batch_tokens, a.run.kernel_variant),
                hook: a.hook,
                prefix_space: a.prefix_space,
                top_k: a.top_k,
            },
            &notes,
        )?,
        SweepCommand::Corpus(a) => {
            let shard = a.shard.as_deref().map(Shard::parse).transpose()?.unwrap_or(Shard::WHOLE);
            sweep_corpus(
                &CorpusArgs {
                    common: common(a.model, a.run.out, a.run.batch_tokens, a.run.kernel_variant),
                    hook: a.hook,
                    texts: a.text,
                    context: a.context,
                    top_k: a.top_k,
                    shard,
                },
                &notes,
            )?
        }
        SweepCommand::Merge(a) => {
            let merged = merge(&MergeArgs { shard_dirs: a.shard_dirs, out_dir: a.out_dir, force: a.force })?;
            let mut summary = format!("merged {} shards\n", merged.shards);
            for f in &merged.files {
                summary.push_str(&format!("wrote {}\n", f.display()));
            }
            SweepOutcome { summary, files: merged.files, streamed: None }
        }
        SweepCommand::Logits(a) => sweep_logits(
            &LogitsArgs {
                common: common(a.model, a.out, None, a.kernel_variant),
                layer: a.layer,
                top_k: a.top_k,
            },
            &notes,
        )?,
    };
    print!("{}", outcome.summary);
    Ok(())
}
