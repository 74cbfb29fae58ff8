//! `neoprobe patch`: the activation-patching heatmap.

use super::model_args::ModelArgs;
use super::terminal::Terminal;
use clap::Args;
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::patch::{patch, read_pairs, PatchArgs, PromptPair, DEFAULT_HOOKS};
use neoprobe::text::sig;
use std::path::PathBuf;

#[derive(Args)]
#[command(group = clap::ArgGroup::new("prompts").required(true).args(["clean", "pairs"]))]
pub struct PatchCli {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The clean input, whose activations are patched in.
    #[arg(long, value_name = "TEXT", requires_all = ["corrupt", "answer", "wrong"])]
    pub clean: Option<String>,
    /// The corrupt input, run with one activation at a time from the clean run.
    #[arg(long, value_name = "TEXT", requires = "clean")]
    pub corrupt: Option<String>,
    /// The answer token (one token; a leading space is part of it: " Paris").
    #[arg(long, value_name = "TOKEN", requires = "clean")]
    pub answer: Option<String>,
    /// The wrong answer token.
    #[arg(long, value_name = "TOKEN", requires = "clean")]
    pub wrong: Option<String>,
    /// Prompt pairs instead, averaged: one JSON object per line with "clean", "corrupt",
    /// "answer" and "wrong"; every pair must tokenize to the same length.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "clean")]
    pub pairs: Option<PathBuf>,
    /// The hooks patched, a name or pattern (blocks.*.hook_resid_pre, blocks.*.attn.hook_z,
    /// blocks.*.mlp.hook_post).
    #[arg(long, value_name = "PATTERN", default_value = DEFAULT_HOOKS)]
    pub hook: String,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub kernel_variant: Option<Variant>,
    /// Output folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR", default_value = "patch-out")]
    pub out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing patch's files there.
    #[arg(long)]
    pub force: bool,
    /// Print the report as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PatchCli) -> anyhow::Result<()> {
    let notes = Terminal::new();
    let pairs = match (args.pairs, args.clean) {
        (Some(file), _) => read_pairs(&file)?,
        (None, Some(clean)) => vec![PromptPair {
            clean,
            corrupt: args.corrupt.expect("clap requires --corrupt with --clean"),
            answer: args.answer.expect("clap requires --answer with --clean"),
            wrong: args.wrong.expect("clap requires --wrong with --clean"),
        }],
        (None, None) => unreachable!("clap requires --clean or --pairs"),
    };
    let report = patch(
        &PatchArgs {
            model: args.model.source(),
            fetch: FetchOptions::default(),
            pairs,
            hooks: args.hook,
            variant: args.kernel_variant,
            out_dir: args.out_dir.clone(),
            force: args.force,
        },
        &notes,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let averaged =
            if report.pairs > 1 { format!(" (mean of {} pairs)", report.pairs) } else { String::new() };
        println!(
            "logit({:?}) − logit({:?}) at the last position{averaged}: clean {}, corrupt {}",
            report.answer,
            report.wrong,
            sig(report.clean_diff, 4),
            sig(report.corrupt_diff, 4)
        );
        println!("(patched − corrupt) / (clean − corrupt), a row per hook, a column per position:");
        let cols = report.shape[1];
        for (i, hook) in report.hooks.iter().enumerate() {
            let row: Vec<String> = report.normalized[i * cols..(i + 1) * cols]
                .iter()
                .map(|&v| format!("{:>7}", sig(v as f64, 3)))
                .collect();
            println!("  {hook:<34}{}", row.join(" "));
        }
    }
    notes.done(&format!("wrote {} files into {}", report.files.len(), args.out_dir.display()));
    Ok(())
}
