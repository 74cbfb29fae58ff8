//! `neoprobe extract`: the activations of any hook points, to .npy or .safetensors.

use super::interventions::InterventionArgs;
use super::model_args::ModelArgs;
use super::terminal::Terminal;
use clap::Args;
use neoprobe::extract::{extract, ExtractArgs, ExtractInput};
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::model::DEFAULT_HOOK;
use neoprobe::pool::Pool;
use std::path::PathBuf;

#[derive(Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["words", "text"]))]
pub struct ExtractCli {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Word list: UTF-8, one word per line; each word runs alone.
    #[arg(long, value_name = "FILE")]
    pub words: Option<PathBuf>,
    /// Text file, run whole as one sequence.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Hook point: a TransformerLens name (blocks.8.mlp.hook_pre, logits, …), the HF path
    /// transformer.h.L.mlp.c_fc, or a pattern with * (blocks.*.mlp.hook_pre); repeatable. One
    /// forward serves them all [default: blocks.8.mlp.hook_pre].
    #[arg(long = "hook", value_name = "NAME")]
    pub hooks: Vec<String>,
    /// Pooling over each word's tokens [default: mean for --words (last for the logits), none
    /// for --text]; attn.hook_pattern is per sequence and never pooled.
    #[arg(long, value_enum)]
    pub pool: Option<Pool>,
    /// Put one space before each word (or the text) before tokenizing.
    #[arg(long)]
    pub prefix_space: bool,
    /// Cut a text to this many tokens [default and ceiling: the model's max_position_embeddings].
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Output file: .npy (float32, one hook) or .safetensors (one tensor per hook, named by the
    /// hook, plus metadata).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub kernel_variant: Option<Variant>,
    /// Print a summary as one JSON object on stdout: output, hooks and shapes, model and commit,
    /// adapter and variant, timings.
    #[arg(long)]
    pub json: bool,
    /// Tokens per GPU batch; words are grouped into batches of at most N tokens (a word is never
    /// split) and the output is written batch by batch [default: from the adapter's limits].
    #[arg(long, value_name = "N")]
    pub batch_tokens: Option<usize>,
    #[command(flatten)]
    pub interventions: InterventionArgs,
}

pub fn run(args: ExtractCli) -> anyhow::Result<()> {
    let input = match (args.words, args.text) {
        (Some(words), _) => ExtractInput::Words(words),
        (None, Some(text)) => ExtractInput::Text(text),
        (None, None) => unreachable!("clap requires --words or --text"),
    };
    let notes = Terminal::new();
    let hooks = if args.hooks.is_empty() { vec![DEFAULT_HOOK.to_string()] } else { args.hooks };
    let summary = extract(
        &ExtractArgs {
            model: args.model.source(),
            fetch: FetchOptions::default(),
            input,
            hooks,
            pool: args.pool,
            prefix_space: args.prefix_space,
            max_tokens: args.max_tokens,
            out: args.out.clone(),
            variant: args.kernel_variant,
            batch_tokens: args.batch_tokens,
            interventions: args.interventions.specs(),
        },
        &notes,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    let arrays: Vec<String> = summary.hooks.iter().map(|h| format!("{} {:?}", h.hook, h.shape)).collect();
    notes.done(&format!(
        "wrote {}: {} ({} tokens, {} kernels on {})",
        args.out.display(),
        arrays.join(", "),
        summary.n_tokens,
        summary.variant,
        summary.adapter
    ));
    Ok(())
}
