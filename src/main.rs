//! The `neoprobe` command line: parses arguments, calls the library, prints.

use clap::{Args, Parser, Subcommand};
use neoprobe::extract::{extract, ExtractArgs, ExtractInput};
use neoprobe::pool::Pool;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "neoprobe",
    version,
    about = "GPT-Neo activations from WGSL kernels on any GPU, and the grammar-tuning challenge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run words or a text through a local model and save one hook point's activations.
    Extract(ExtractCli),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["words", "text"]))]
struct ExtractCli {
    /// Model folder with config.json, model.safetensors and tokenizer.json.
    #[arg(long, value_name = "DIR")]
    model_dir: PathBuf,
    /// Word list: UTF-8, one word per line; each word runs alone.
    #[arg(long, value_name = "FILE")]
    words: Option<PathBuf>,
    /// Text file, run whole as one sequence.
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// Hook point (TransformerLens name, or transformer.h.L.mlp.c_fc).
    #[arg(long, value_name = "NAME", default_value = "blocks.8.mlp.hook_pre")]
    hook: String,
    /// Pooling over each word's tokens [default: mean for --words, none for --text].
    #[arg(long, value_enum)]
    pool: Option<Pool>,
    /// Put one space before each word (or the text) before tokenizing.
    #[arg(long)]
    prefix_space: bool,
    /// Cut a text to this many tokens [default and ceiling: the model's max_position_embeddings].
    #[arg(long, value_name = "N")]
    max_tokens: Option<usize>,
    /// Output file: .npy (float32) or .safetensors (tensor `activations` plus metadata).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
}

fn main() -> ExitCode {
    // Mesa's Vulkan drivers probe for a Wayland display and print a misleading
    // "error: XDG_RUNTIME_DIR is invalid or not set" on headless machines, although nothing here
    // needs a display. Giving them a runtime folder keeps the terminal to neoprobe's own lines.
    // (Set before any thread starts.)
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Extract(args) => run_extract(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Errors are printed on one line, whatever their sources put in them.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run_extract(args: ExtractCli) -> anyhow::Result<()> {
    let input = match (args.words, args.text) {
        (Some(words), _) => ExtractInput::Words(words),
        (None, Some(text)) => ExtractInput::Text(text),
        (None, None) => unreachable!("clap requires --words or --text"),
    };
    let summary = extract(&ExtractArgs {
        model_dir: args.model_dir,
        input,
        hook: args.hook,
        pool: args.pool,
        prefix_space: args.prefix_space,
        max_tokens: args.max_tokens,
        out: args.out.clone(),
    })?;
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "wrote {} {:?} ({}, {} tokens) on {}",
        args.out.display(),
        summary.shape,
        summary.hook,
        summary.n_tokens,
        summary.adapter
    );
    Ok(())
}
