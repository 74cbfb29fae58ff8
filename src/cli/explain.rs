//! `neoprobe explain`: one neuron's value for one word, from the weights through the kernel.

use super::model_args::ModelArgs;
use super::terminal::Terminal;
use clap::Args;
use neoprobe::explain;
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::model::DEFAULT_LAYER;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExplainCli {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The word, run alone as the challenge runs it (any UTF-8).
    #[arg(long, value_name = "WORD")]
    pub word: String,
    /// The neuron of the block's MLP (0 to intermediate size − 1).
    #[arg(long, value_name = "N")]
    pub neuron: usize,
    /// The block.
    #[arg(long, value_name = "L", default_value_t = DEFAULT_LAYER)]
    pub layer: usize,
    /// Put one space before the word before tokenizing.
    #[arg(long)]
    pub prefix_space: bool,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub kernel_variant: Option<Variant>,
    /// Output folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR", default_value = "explain-out")]
    pub out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing explain's files there.
    #[arg(long)]
    pub force: bool,
    /// Print the explanation as one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ExplainCli) -> anyhow::Result<()> {
    let notes = Terminal::new();
    let outcome = explain::explain(
        &explain::ExplainArgs {
            model: args.model.source(),
            fetch: FetchOptions::default(),
            word: args.word,
            neuron: args.neuron,
            layer: args.layer,
            prefix_space: args.prefix_space,
            variant: args.kernel_variant,
            out_dir: args.out_dir.clone(),
            force: args.force,
        },
        &notes,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome.explanation)?);
    } else {
        print!("{}", explain::terminal(&outcome.explanation));
    }
    notes.done(&format!("wrote {} files into {}", outcome.files.len(), args.out_dir.display()));
    Ok(())
}
