//! The `neoprobe` command line: parses arguments, calls the library, prints.

use clap::{Args, Parser, Subcommand};
use neoprobe::bench::{self, BenchArgs, BenchModel};
use neoprobe::extract::{extract, ExtractArgs, ExtractInput};
use neoprobe::kernels::Variant;
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
    /// Time the kernels, the challenge forward and a whole run on this adapter (no download).
    Bench(BenchCli),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("bench_model").required(true).args(["synthetic", "model_dir"]))]
struct BenchCli {
    /// Seeded random weights at a known shape, written to a temporary folder.
    #[arg(long, value_enum)]
    synthetic: Option<SyntheticShape>,
    /// A local model folder instead.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// tokenizer.json for --synthetic [default: fixtures/tiny-neo/tokenizer.json of this repository].
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Kernel variant(s) to measure [default: every variant the adapter runs].
    #[arg(long = "kernel-variant", value_enum, value_name = "VARIANT")]
    variants: Vec<Variant>,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Also time HF transformers and numpy on the same work (bench/hf_baseline.py) and whole
    /// processes (neoprobe challenge vs bench/seed_experiment.py); print ratios.
    #[arg(long)]
    baseline: bool,
    /// Python interpreter with torch and transformers, for --baseline.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SyntheticShape {
    #[value(name = "gpt-neo-125m")]
    GptNeo125m,
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
        Command::Bench(args) => run_bench(args),
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

fn run_bench(args: BenchCli) -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = match (args.synthetic, args.model_dir) {
        (_, Some(dir)) => BenchModel::Dir(dir),
        (Some(SyntheticShape::GptNeo125m), None) => BenchModel::Synthetic {
            tokenizer: args.tokenizer.unwrap_or_else(|| repo.join("fixtures/tiny-neo/tokenizer.json")),
        },
        (None, None) => unreachable!("clap requires --synthetic or --model-dir"),
    };
    let variants = if args.variants.is_empty() { bench::runnable_variants()? } else { args.variants };
    let baseline_python = args.baseline.then_some(args.python);
    let repo = match &baseline_python {
        Some(_) => bench::repo_with_bench(&std::env::current_dir()?)
            .or_else(|| bench::repo_with_bench(&repo))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--baseline needs the bench/ scripts of the neoprobe repository; run it from there"
                )
            })?,
        None => repo,
    };
    let report = bench::run(
        &BenchArgs { model, variants, repeats: args.repeats.max(1), baseline_python, repo },
        &|step| eprintln!("bench: {step}"),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::render(&report));
    }
    Ok(())
}
