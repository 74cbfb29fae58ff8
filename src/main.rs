//! The `neoprobe` command line: parses arguments, calls the library, prints.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use neoprobe::bench::{self, BenchArgs, BenchModel};
use neoprobe::challenge::permutation::{DEFAULT_PERMUTATIONS as PERMUTATIONS, DEFAULT_SEED as SEED};
use neoprobe::challenge::run::{DEFAULT_LAYER, DEFAULT_OUT_DIR};
use neoprobe::challenge::{run_challenge, CategorySpec, ChallengeArgs, ModelSource};
use neoprobe::explain;
use neoprobe::extract::{extract, ExtractArgs, ExtractInput};
use neoprobe::hub::{FetchOptions, DEFAULT_MODEL};
use neoprobe::kernels::Variant;
use neoprobe::pool::Pool;
use neoprobe::trace;
use neoprobe::verify;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "neoprobe",
    bin_name = "neoprobe",
    version,
    about = "GPT-Neo activations from WGSL kernels on any GPU, and the grammar-tuning challenge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Do GPT-Neo's MLP neurons prefer nouns or verbs? Activations, statistics, figures and a report
    ///
    /// Runs every word of each category alone (as written, or after one space with
    /// --prefix-space), in packed GPU batches, through the model up to blocks.L.mlp.hook_pre
    /// (the c_fc output after matmul and bias, before GELU), pools each word's tokens into one
    /// row, and compares the categories neuron by neuron: Welch's t-test of the first category
    /// against the second (Bonferroni and Benjamini-Hochberg corrected), Cohen's d, and means and
    /// SDs for every category. Two checks go beside the counts: label shuffles (how many
    /// neurons chance alone makes significant: --permutations) and the same test on the words
    /// that are one token long (a control for word length).
    ///
    /// The default is the challenge itself: the 100 verbs and 100 nouns of data/verbs.txt and
    /// data/nouns.txt (built into the binary) through EleutherAI/gpt-neo-125m at a pinned commit,
    /// downloaded once into the Hugging Face cache.
    ///
    /// Files written into --out-dir (all at once, after the whole run succeeded):
    ///   activations.npy          float32 [C, n, width] when all C categories have n words
    ///                            (default [2, 100, 3072]: 0 = verbs, 1 = nouns); with unequal
    ///                            sizes [total words, width], rows in category order
    ///   activations.safetensors  the same array as tensor `activations`, with metadata:
    ///                            layout, categories (JSON: name, source, offset, size, words),
    ///                            category_sizes, category_offsets, token_ids per word, model and
    ///                            revision/commit (or model_dir), hook, pooling, prefix_space,
    ///                            adapter, kernel_variant, neoprobe_version
    ///   neurons.csv              per neuron: mean and SD per category, t, p, cohen_d,
    ///                            p_bonferroni, q_bh
    ///   heatmap.png              words × neurons, grouped by category
    ///   top_neurons.png          every word's activation for the neurons with the largest |t|
    ///   offsets.png              histogram of the per-neuron means
    ///   report.md                the findings with their numbers and the figures, the
    ///                            checks, and with --sweep what the top neurons respond to
    ///
    /// A summary goes to stdout (JSON with --json); notes and progress to stderr.
    #[command(verbatim_doc_comment)]
    Challenge(ChallengeCli),
    /// Run words or a text through the model and save the activations of any hook points.
    Extract(ExtractCli),
    /// Follow one neuron's value for one word from the weights through the kernel to the output
    ///
    /// Runs WORD alone (as the challenge does) up to blocks.L.mlp.hook_post and shows, for each of
    /// its tokens, how c_fc computed neuron N: ln_2's statistics and output x, the weight row and
    /// bias, the 768 products and the largest of them, which workgroup and invocation of the
    /// kernel variant computed it (checked against ids the kernel itself records), its order of
    /// summation replayed in f32 beside the GPU's value and the exact sum, and gelu_new step by
    /// step. Writes explain.md, explain.json, contributions.png and tiles.png into --out-dir.
    #[command(verbatim_doc_comment)]
    Explain(ExplainCli),
    /// Every dispatch of the forward: module, kernel, grid, FLOPs, bytes, time
    ///
    /// Runs the input (default: the challenge's 200 words, each alone, in one packed batch) up to
    /// --hook once to compile and warm up, then once more with every dispatch described and
    /// timed: GPU timestamps where the adapter has usable ones, else the wall clock around each
    /// dispatch submitted alone. Prints a table (per dispatch: module, kernel file, grid,
    /// workgroup size, GFLOP, MB moved, arithmetic intensity, time, share, GFLOP/s), totals per
    /// kernel and the slowest five; writes trace.png and trace.json into --out-dir.
    #[command(verbatim_doc_comment)]
    Trace(TraceCli),
    /// Check this adapter's results against an f64 reference of the same weights
    ///
    /// For every kernel variant the adapter runs (or each --kernel-variant): each kernel against
    /// the f64 reference at the model's real shapes and weights; the forward on the challenge's
    /// words and on a built-in text longer than the local window against the f64 reference
    /// forward, at every hook of a global and a local block and at the logits; and for the
    /// pinned EleutherAI/gpt-neo-125m, the loss on "<|endoftext|>Hello world!" against
    /// TransformerLens' published 4.900552272796631. Prints one table (check, max abs error,
    /// tolerance, pass) and exits 0 only if every check passes.
    #[command(verbatim_doc_comment)]
    Verify(VerifyCli),
    /// Time the kernels, the challenge forward and a whole run on this adapter (no download).
    Bench(BenchCli),
    /// Sweep the vocabulary, a corpus or the unembedding: per neuron what it responds to and writes.
    Sweep(neoprobe::sweep::cli::SweepCli),
}

#[derive(Args)]
struct VerifyCli {
    #[command(flatten)]
    model: ModelArgs,
    /// A kernel variant to check, repeatable [default: every one this adapter runs].
    #[arg(long = "kernel-variant", value_enum, value_name = "VARIANT")]
    variants: Vec<Variant>,
    /// Print the report as one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Compile a deliberate error into the kernels (to see the checks fail).
    #[arg(long, value_enum, hide = true)]
    inject_fault: Option<FaultKind>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FaultKind {
    Linear,
    Attention,
    Layernorm,
}

#[derive(Args)]
struct ModelArgs {
    /// Model id on the Hugging Face hub, fetched into the HF cache (HF_HOME, HF_ENDPOINT,
    /// HF_HUB_OFFLINE and HF_TOKEN are honoured).
    #[arg(long, value_name = "ID", default_value = DEFAULT_MODEL, conflicts_with = "model_dir")]
    model: String,
    /// Commit, branch or tag on the hub [default: the pinned commit for the default model, main
    /// for any other].
    #[arg(long, value_name = "REV", conflicts_with = "model_dir")]
    revision: Option<String>,
    /// Local model folder with config.json, model.safetensors and tokenizer.json; no network.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
}

impl ModelArgs {
    fn source(self) -> ModelSource {
        match self.model_dir {
            Some(dir) => ModelSource::Dir(dir),
            None => ModelSource::Hub { id: self.model, revision: self.revision },
        }
    }
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("trace_input").args(["words", "text"]))]
struct TraceCli {
    #[command(flatten)]
    model: ModelArgs,
    /// Word list: UTF-8, one word per line; each word runs alone [default: the challenge's words].
    #[arg(long, value_name = "FILE")]
    words: Option<PathBuf>,
    /// Text file, run whole as one sequence.
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// The forward stops at this hook point.
    #[arg(long, value_name = "NAME", default_value = "blocks.8.mlp.hook_pre")]
    hook: String,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    kernel_variant: Option<Variant>,
    /// Output folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR", default_value = "trace-out")]
    out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing trace's files there.
    #[arg(long)]
    force: bool,
    /// Print the trace as one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExplainCli {
    #[command(flatten)]
    model: ModelArgs,
    /// The word, run alone as the challenge runs it (any UTF-8).
    #[arg(long, value_name = "WORD")]
    word: String,
    /// The neuron of the block's MLP (0 to intermediate size − 1).
    #[arg(long, value_name = "N")]
    neuron: usize,
    /// The block.
    #[arg(long, value_name = "L", default_value_t = neoprobe::explain::DEFAULT_LAYER)]
    layer: usize,
    /// Put one space before the word before tokenizing.
    #[arg(long)]
    prefix_space: bool,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    kernel_variant: Option<Variant>,
    /// Output folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR", default_value = "explain-out")]
    out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing explain's files there.
    #[arg(long)]
    force: bool,
    /// Print the explanation as one JSON object on stdout instead of the summary.
    #[arg(long)]
    json: bool,
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
    /// tokenizer.json for --synthetic [default: fixtures/tiny-neo/tokenizer.json (GPT-2's), from
    /// the current folder or this repository].
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Keep the --synthetic model in this folder (a usable model folder for other commands).
    #[arg(long, value_name = "DIR", requires = "synthetic")]
    save_synthetic: Option<PathBuf>,
    /// Kernel variant(s) to measure, repeatable [default: the fastest for the adapter; `simple` and
    /// `tiled` on a CPU driver take minutes].
    #[arg(long = "kernel-variant", value_enum, value_name = "VARIANT")]
    variants: Vec<Variant>,
    /// Timed repetitions per measurement, the median reported (each kernel also runs until 10
    /// runs and 0.3 s are timed, and its best run is reported too).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Also time HF transformers and numpy on the same work (bench/hf_baseline.py) and whole
    /// processes (neoprobe challenge vs bench/seed_experiment.py); print ratios.
    #[arg(long)]
    baseline: bool,
    /// Python interpreter with torch and transformers, for --baseline.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: String,
    /// With --baseline: rounds of the GEMM comparison, neoprobe's linear layers and numpy's sgemm
    /// timed in turn (bench/sgemm.py), so both see the machine in the same moods.
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    gemm_rounds: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// What to measure: the kernels, the challenge forward and a whole run; or the sweeps (the
    /// vocabulary sweep's wall time and tokens/s against its target, and the corpus sweep's peak
    /// memory on a 200 KB text against a 40 KB one, each as its own process).
    #[arg(long, value_enum, default_value = "kernels")]
    workload: Workload,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    Kernels,
    Sweep,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SyntheticShape {
    #[value(name = "gpt-neo-125m")]
    GptNeo125m,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["words", "text"]))]
struct ExtractCli {
    #[command(flatten)]
    model: ModelArgs,
    /// Word list: UTF-8, one word per line; each word runs alone.
    #[arg(long, value_name = "FILE")]
    words: Option<PathBuf>,
    /// Text file, run whole as one sequence.
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// Hook point: a TransformerLens name (blocks.8.mlp.hook_pre, logits, …), the HF path
    /// transformer.h.L.mlp.c_fc, or a pattern with * (blocks.*.mlp.hook_pre); repeatable. One
    /// forward serves them all [default: blocks.8.mlp.hook_pre].
    #[arg(long = "hook", value_name = "NAME")]
    hooks: Vec<String>,
    /// Pooling over each word's tokens [default: mean for --words (last for the logits), none
    /// for --text]; attn.hook_pattern is per sequence and never pooled.
    #[arg(long, value_enum)]
    pool: Option<Pool>,
    /// Put one space before each word (or the text) before tokenizing.
    #[arg(long)]
    prefix_space: bool,
    /// Cut a text to this many tokens [default and ceiling: the model's max_position_embeddings].
    #[arg(long, value_name = "N")]
    max_tokens: Option<usize>,
    /// Output file: .npy (float32, one hook) or .safetensors (one tensor per hook, named by the
    /// hook, plus metadata).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    kernel_variant: Option<Variant>,
    /// Print a summary as one JSON object on stdout: output, hooks and shapes, model and commit,
    /// adapter and variant, timings.
    #[arg(long)]
    json: bool,
    /// Tokens per GPU batch; words are grouped into batches of at most N tokens (a word is never
    /// split) and the output is written batch by batch [default: from the adapter's limits].
    #[arg(long, value_name = "N")]
    batch_tokens: Option<usize>,
}

#[derive(Args)]
struct ChallengeCli {
    /// Model id on the Hugging Face hub, fetched into the HF cache (HF_HOME, HF_ENDPOINT,
    /// HF_HUB_OFFLINE and HF_TOKEN are honoured).
    #[arg(long, value_name = "ID", default_value = DEFAULT_MODEL, conflicts_with = "model_dir")]
    model: String,
    /// Commit, branch or tag on the hub [default: the pinned commit
    /// 21def0189f5705e2521767faed922f1f15e7d7db for the default model, main for any other].
    #[arg(long, value_name = "REV", conflicts_with = "model_dir")]
    revision: Option<String>,
    /// Local model folder with config.json, model.safetensors and tokenizer.json; no network.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Verb list: UTF-8, one word per line [default: data/verbs.txt, built in].
    #[arg(long, value_name = "FILE", conflicts_with = "category")]
    verbs: Option<PathBuf>,
    /// Noun list: UTF-8, one word per line [default: data/nouns.txt, built in].
    #[arg(long, value_name = "FILE", conflicts_with = "category")]
    nouns: Option<PathBuf>,
    /// A category and its word list, instead of verbs and nouns; repeat it (at least 2). The
    /// t-test compares the first two; every category gets means and SDs.
    #[arg(long, value_name = "NAME=FILE")]
    category: Vec<String>,
    /// The block whose mlp.hook_pre is read.
    #[arg(long, value_name = "L", default_value_t = DEFAULT_LAYER)]
    layer: usize,
    /// How each word's tokens become one row.
    #[arg(
        long,
        value_name = "POOL",
        default_value = "mean",
        value_parser = PossibleValuesParser::new(["mean", "first", "last", "max"])
            .map(|name| Pool::from_str(&name, false).expect("every listed pooling is a Pool"))
    )]
    pool: Pool,
    /// Put one space before each word before tokenizing.
    #[arg(long)]
    prefix_space: bool,
    /// Output folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_OUT_DIR)]
    out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing the challenge's files there.
    #[arg(long)]
    force: bool,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    kernel_variant: Option<Variant>,
    /// Tokens per GPU batch; words are grouped into batches of at most N tokens, never split
    /// [default: from the adapter's limits].
    #[arg(long, value_name = "N")]
    batch_tokens: Option<usize>,
    /// Label shuffles of the permutation test: the neurons at BH q < 0.05 and Bonferroni
    /// p < 0.05 are recounted with the first two categories' labels shuffled N times, and the
    /// observed counts set against that null (mean, 95th percentile, p-value); 0 skips it.
    #[arg(long, value_name = "N", default_value_t = PERMUTATIONS)]
    permutations: usize,
    /// Seed of the label shuffles.
    #[arg(long, value_name = "S", default_value_t = SEED)]
    seed: u64,
    /// Output folder of `neoprobe sweep vocab`, `corpus` or `logits` on the same model and block
    /// (repeatable): report.md then shows each top neuron's top tokens alone, top corpus contexts
    /// and the tokens it promotes and suppresses.
    #[arg(long = "sweep", value_name = "DIR")]
    sweeps: Vec<PathBuf>,
    /// Print the summary as JSON on stdout instead of the text summary.
    #[arg(long)]
    json: bool,
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
        Command::Challenge(args) => run_challenge_cli(args),
        Command::Explain(args) => run_explain(args),
        Command::Trace(args) => run_trace(args),
        Command::Verify(args) => run_verify(args),
        Command::Sweep(args) => neoprobe::sweep::cli::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Progress notes for people watching a terminal; a pipe gets only the results and final notes.
fn terminal_notes(interactive: bool) -> impl FnMut(&str) {
    move |note: &str| {
        if interactive {
            eprintln!("neoprobe: {note}");
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
    let interactive = std::io::stderr().is_terminal();
    let hooks = if args.hooks.is_empty() { vec!["blocks.8.mlp.hook_pre".to_string()] } else { args.hooks };
    let summary = extract(&ExtractArgs {
        model: args.model.source(),
        fetch: FetchOptions { progress: interactive, ..FetchOptions::default() },
        input,
        hooks,
        pool: args.pool,
        prefix_space: args.prefix_space,
        max_tokens: args.max_tokens,
        out: args.out.clone(),
        variant: args.kernel_variant,
        batch_tokens: args.batch_tokens,
        progress: interactive,
    })?;
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    let arrays: Vec<String> = summary.hooks.iter().map(|h| format!("{} {:?}", h.hook, h.shape)).collect();
    eprintln!(
        "wrote {}: {} ({} tokens, {} kernels on {})",
        args.out.display(),
        arrays.join(", "),
        summary.n_tokens,
        summary.variant,
        summary.adapter
    );
    Ok(())
}

fn run_bench(args: BenchCli) -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = match (args.synthetic, args.model_dir) {
        (_, Some(dir)) => BenchModel::Dir(dir),
        (Some(SyntheticShape::GptNeo125m), None) => BenchModel::Synthetic {
            tokenizer: args.tokenizer.unwrap_or_else(|| {
                let shipped = Path::new("fixtures/tiny-neo/tokenizer.json");
                if shipped.is_file() {
                    shipped.to_path_buf()
                } else {
                    repo.join(shipped)
                }
            }),
            save_to: args.save_synthetic,
        },
        (None, None) => unreachable!("clap requires --synthetic or --model-dir"),
    };
    let variants = if args.variants.is_empty() { vec![bench::default_variant()?] } else { args.variants };
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
    let bench_args = BenchArgs {
        model,
        variants,
        repeats: args.repeats.max(1),
        baseline_python,
        gemm_rounds: args.gemm_rounds as usize,
        repo,
    };
    if args.workload == Workload::Sweep {
        let report = bench::run_sweep(&bench_args, &|step| eprintln!("bench: {step}"))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", bench::sweep::render(&report));
        }
        return Ok(());
    }
    let report = bench::run(&bench_args, &|step| eprintln!("bench: {step}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::render(&report));
    }
    Ok(())
}

fn run_explain(args: ExplainCli) -> anyhow::Result<()> {
    let interactive = std::io::stderr().is_terminal();
    let outcome = explain::explain(
        &explain::ExplainArgs {
            model: args.model.source(),
            fetch: FetchOptions { progress: interactive, ..FetchOptions::default() },
            word: args.word,
            neuron: args.neuron,
            layer: args.layer,
            prefix_space: args.prefix_space,
            variant: args.kernel_variant,
            out_dir: args.out_dir.clone(),
            force: args.force,
        },
        &mut terminal_notes(interactive),
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome.explanation)?);
    } else {
        print!("{}", explain::terminal(&outcome.explanation));
    }
    eprintln!("neoprobe: wrote {} files into {}", outcome.files.len(), args.out_dir.display());
    Ok(())
}

fn run_trace(args: TraceCli) -> anyhow::Result<()> {
    let interactive = std::io::stderr().is_terminal();
    let input = match (args.words, args.text) {
        (Some(words), _) => trace::TraceInput::Words(words),
        (None, Some(text)) => trace::TraceInput::Text(text),
        (None, None) => trace::TraceInput::ChallengeWords,
    };
    let outcome = trace::trace(
        &trace::TraceArgs {
            model: args.model.source(),
            fetch: FetchOptions { progress: interactive, ..FetchOptions::default() },
            input,
            hook: args.hook,
            variant: args.kernel_variant,
            out_dir: args.out_dir.clone(),
            force: args.force,
        },
        &mut terminal_notes(interactive),
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome.report)?);
    } else {
        print!("{}", trace::render_table(&outcome.report));
    }
    eprintln!("neoprobe: wrote {} files into {}", outcome.files.len(), args.out_dir.display());
    Ok(())
}

fn run_verify(args: VerifyCli) -> anyhow::Result<()> {
    let interactive = std::io::stderr().is_terminal();
    // A relative error far above rounding and far below what any real bug does.
    let amount = 1.0 / 1024.0;
    let faults = match args.inject_fault {
        None => neoprobe::kernels::Faults::default(),
        Some(FaultKind::Linear) => neoprobe::kernels::Faults { linear: amount, ..Default::default() },
        Some(FaultKind::Attention) => neoprobe::kernels::Faults { attention: amount, ..Default::default() },
        Some(FaultKind::Layernorm) => neoprobe::kernels::Faults { layernorm: amount, ..Default::default() },
    };
    let report = verify::verify(
        &verify::VerifyArgs {
            model: args.model.source(),
            fetch: FetchOptions { progress: interactive, ..FetchOptions::default() },
            variants: args.variants,
            faults,
        },
        &mut terminal_notes(interactive),
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", verify::render(&report));
    }
    if !report.pass {
        let failed = report.checks.iter().filter(|c| c.pass == Some(false)).count();
        anyhow::bail!("verification failed: {failed} checks failed on {}", report.adapter);
    }
    Ok(())
}

fn run_challenge_cli(args: ChallengeCli) -> anyhow::Result<()> {
    let categories = if args.category.is_empty() {
        CategorySpec::verbs_and_nouns(args.verbs, args.nouns)
    } else {
        args.category.iter().map(|arg| CategorySpec::parse(arg)).collect::<anyhow::Result<_>>()?
    };
    let model = match args.model_dir {
        Some(dir) => ModelSource::Dir(dir),
        None => ModelSource::Hub { id: args.model, revision: args.revision },
    };
    let interactive = std::io::stderr().is_terminal();
    let outcome = run_challenge(
        &ChallengeArgs {
            model,
            categories,
            layer: args.layer,
            pool: args.pool,
            prefix_space: args.prefix_space,
            out_dir: args.out_dir,
            force: args.force,
            variant: args.kernel_variant,
            fetch: FetchOptions { progress: interactive, ..FetchOptions::default() },
            batch_tokens: args.batch_tokens,
            progress: interactive,
            permutations: args.permutations,
            seed: args.seed,
            sweeps: args.sweeps,
        },
        &mut terminal_notes(interactive),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.json)?);
    } else {
        print!("{}", outcome.summary);
    }
    for note in &outcome.notes {
        eprintln!("neoprobe: {note}");
    }
    Ok(())
}
