//! `neoprobe trace`: every dispatch of the forward, described and timed.

use super::model_args::ModelArgs;
use super::terminal::Terminal;
use clap::Args;
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::model::DEFAULT_HOOK;
use neoprobe::trace;
use std::path::PathBuf;

#[derive(Args)]
#[command(group = clap::ArgGroup::new("trace_input").args(["words", "text"]))]
pub struct TraceCli {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Word list: UTF-8, one word per line; each word runs alone [default: the challenge's words].
    #[arg(long, value_name = "FILE")]
    pub words: Option<PathBuf>,
    /// Text file, run whole as one sequence.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// The forward stops at this hook point.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_HOOK)]
    pub hook: String,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub kernel_variant: Option<Variant>,
    /// Output folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR", default_value = "trace-out")]
    pub out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing trace's files there.
    #[arg(long)]
    pub force: bool,
    /// Print the trace as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TraceCli) -> anyhow::Result<()> {
    let notes = Terminal::new();
    let input = match (args.words, args.text) {
        (Some(words), _) => trace::TraceInput::Words(words),
        (None, Some(text)) => trace::TraceInput::Text(text),
        (None, None) => trace::TraceInput::ChallengeWords,
    };
    let outcome = trace::trace(
        &trace::TraceArgs {
            model: args.model.source(),
            fetch: FetchOptions::default(),
            input,
            hook: args.hook,
            variant: args.kernel_variant,
            out_dir: args.out_dir.clone(),
            force: args.force,
        },
        &notes,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome.report)?);
    } else {
        print!("{}", trace::render_table(&outcome.report));
    }
    notes.done(&format!("wrote {} files into {}", outcome.files.len(), args.out_dir.display()));
    Ok(())
}
