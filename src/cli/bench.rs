//! `neoprobe bench`: the kernels, the challenge forward and a whole run, timed on this adapter.

use super::terminal::Terminal;
use clap::Args;
use neoprobe::bench::{self, BenchArgs, BenchModel};
use neoprobe::kernels::Variant;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("bench_model").required(true).args(["synthetic", "model_dir"]))]
pub struct BenchCli {
    /// Seeded random weights at a known shape, written to a temporary folder.
    #[arg(long, value_enum)]
    pub synthetic: Option<SyntheticShape>,
    /// A local model folder instead.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// tokenizer.json for --synthetic [default: fixtures/tiny-neo/tokenizer.json (GPT-2's), from
    /// the current folder or this repository].
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Keep the --synthetic model in this folder (a usable model folder for other commands).
    #[arg(long, value_name = "DIR", requires = "synthetic")]
    pub save_synthetic: Option<PathBuf>,
    /// Kernel variant(s) to measure, repeatable [default: the fastest for the adapter; `simple` and
    /// `tiled` on a CPU driver take minutes].
    #[arg(long = "kernel-variant", value_enum, value_name = "VARIANT")]
    pub variants: Vec<Variant>,
    /// Timed repetitions per measurement, the median reported (each kernel also runs until 10
    /// runs and 0.3 s are timed, and its best run is reported too).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Also time HF transformers and numpy on the same work (bench/hf_baseline.py) and whole
    /// processes (neoprobe challenge vs bench/seed_experiment.py); print ratios.
    #[arg(long)]
    pub baseline: bool,
    /// Python interpreter with torch and transformers, for --baseline.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: String,
    /// With --baseline: rounds of the GEMM comparison, neoprobe's linear layers and numpy's sgemm
    /// timed in turn (bench/sgemm.py), so both see the machine in the same moods.
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub gemm_rounds: u32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// What to measure: the kernels, the challenge forward and a whole run; or the sweeps (the
    /// vocabulary sweep's wall time and tokens/s against its target, and the corpus sweep's peak
    /// memory on a 200 KB text against a 40 KB one, each as its own process).
    #[arg(long, value_enum, default_value = "kernels")]
    pub workload: Workload,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Kernels,
    Sweep,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SyntheticShape {
    #[value(name = "gpt-neo-125m")]
    GptNeo125m,
}

pub fn run(args: BenchCli) -> anyhow::Result<()> {
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
        let report = bench::run_sweep(&bench_args, &Terminal::with(true, "bench"))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", bench::sweep::render(&report));
        }
        return Ok(());
    }
    let report = bench::run(&bench_args, &Terminal::with(true, "bench"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::render(&report));
    }
    Ok(())
}
