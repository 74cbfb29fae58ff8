//! `neoprobe patch`: the activation-patching heatmap.

use super::model_args::ModelArgs;
use super::terminal::Terminal;
use clap::Args;
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::patch::{patch, PatchArgs, DEFAULT_HOOKS};
use neoprobe::text::sig;
use std::path::PathBuf;

#[derive(Args)]
pub struct PatchCli {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The clean input, whose activations are patched in.
    #[arg(long, value_name = "TEXT")]
    pub clean: String,
    /// The corrupt input, run with one activation at a time from the clean run.
    #[arg(long, value_name = "TEXT")]
    pub corrupt: String,
    /// The answer token (one token; a leading space is part of it: " Paris").
    #[arg(long, value_name = "TOKEN")]
    pub answer: String,
    /// The wrong answer token.
    #[arg(long, value_name = "TOKEN")]
    pub wrong: String,
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
    let report = patch(
        &PatchArgs {
            model: args.model.source(),
            fetch: FetchOptions::default(),
            clean: args.clean,
            corrupt: args.corrupt,
            answer: args.answer,
            wrong: args.wrong,
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
        println!(
            "logit({:?}) − logit({:?}) at the last position: clean {}, corrupt {}",
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
            println!("  {hook:<28}{}", row.join(" "));
        }
    }
    notes.done(&format!("wrote {} files into {}", report.files.len(), args.out_dir.display()));
    Ok(())
}
