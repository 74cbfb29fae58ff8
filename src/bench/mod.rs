//! `neoprobe bench`: the kernels at the model's real shapes, the challenge workload, and the
//! phases of a whole run, on whatever adapter is present — and, with `--baseline`, the same work
//! done by HF transformers and numpy on this machine, reported as ratios.

mod baseline;
mod measure;
pub mod sweep;

pub use baseline::{Baseline, BaselineRatios, ProcessRun};
pub use measure::{ChallengeTiming, InterventionCost, KernelTiming, Phases, TimingSource};

use crate::engine::{Engine, LoadedModel};
use crate::gpu::Gpu;
use crate::kernels::{Kernels, Variant};
use crate::model::{
    kernel_shapes, Batch, GptNeoConfig, GptNeoWeights, Hook, HookPlan, HookPoint, Intervention,
    InterventionKind, Interventions, ModelDir,
};
use crate::notes::Notes;
use crate::tokenize::{Tokenizer, WordSource};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the benchmarked model comes from.
#[derive(Clone, Debug)]
pub enum BenchModel {
    /// Seeded random weights at GPT-Neo-125M's shape, written to `save_to` or else a temporary
    /// model folder (the tokenizer is copied from `tokenizer`).
    Synthetic { tokenizer: PathBuf, save_to: Option<PathBuf> },
    /// A local model folder.
    Dir(PathBuf),
}

#[derive(Clone, Debug)]
pub struct BenchArgs {
    pub model: BenchModel,
    /// Kernel variants to measure (the phases of a whole run use the adapter's default one).
    pub variants: Vec<Variant>,
    /// Timed repetitions of each measurement (kernels: at least 10 runs and 0.3 s; see
    /// `measure::time_op`).
    pub repeats: usize,
    /// Run the Python/HF baseline with this interpreter.
    pub baseline_python: Option<String>,
    /// Alternating rounds of the GEMM comparison against numpy (`baseline::interleaved_gemm`).
    pub gemm_rounds: usize,
    /// The repository folder holding `bench/` (for the baseline scripts).
    pub repo: PathBuf,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub timing_source: TimingSource,
    pub model: String,
    pub n_words: usize,
    pub n_tokens: usize,
    pub kernels: Vec<KernelTiming>,
    pub challenge: Vec<ChallengeTiming>,
    /// The challenge forward with a few interventions before block 8, against it plain.
    pub interventions: Vec<InterventionCost>,
    pub phases: Phases,
    pub baseline: Option<Baseline>,
    pub ratios: Option<BaselineRatios>,
}

/// The interventions whose cost `bench` measures, each set against the plain forward: the kinds
/// the causal questions use, on hooks before block 8 (ten neurons zeroed, a head zeroed, the
/// whole residual stream scaled), and one on a value the fused kernels never store apart
/// (`mlp.hook_pre`, whose layer then runs its epilogue as a kernel of its own).
const BENCH_INTERVENTIONS: [&[(InterventionKind, &str)]; 2] = [
    &[
        (InterventionKind::Ablate, "blocks.4.mlp.hook_post:0..10"),
        (InterventionKind::Ablate, "blocks.3.attn.hook_z:head=3"),
        (InterventionKind::Scale, "blocks.6.hook_resid_post=1.01"),
    ],
    &[(InterventionKind::Scale, "blocks.5.mlp.hook_pre:0..10=0.5")],
];

/// The 200 words of the challenge (the lists built into the binary), tokenized as written.
fn challenge_words(tokenizer: &Tokenizer) -> Result<Vec<Vec<u32>>> {
    let mut words = WordSource::verbs().read()?;
    words.extend(WordSource::nouns().read()?);
    words.iter().map(|w| tokenizer.encode_word(&w.word, false)).collect()
}

pub fn run(args: &BenchArgs, notes: &dyn Notes) -> Result<BenchReport> {
    if args.variants.is_empty() {
        bail!("no kernel variant to measure");
    }
    let temp = tempfile::tempdir().context("cannot create a temporary folder for the benchmark")?;
    let (model_dir, model_name) = prepare_model(args, temp.path(), notes)?;
    let dir = ModelDir::open(&model_dir)?;
    let hook = Hook::block(8, HookPoint::MlpPre);

    notes.step("phases of a whole run");
    let phases = measure::whole_run_phases(&dir, hook, default_variant()?)?;

    let (model, plan) =
        LoadedModel::load(&dir, |config| HookPlan::new(&[Hook::parse(&hook.to_string(), config)?]))?;
    let sequences = challenge_words(&model.tokenizer)?;
    let batch = Batch::pack(&sequences, model.config.max_position_embeddings)?;
    let gpu = Gpu::new()?;
    let timing_source = if crate::gpu::timestamps_usable(&gpu) {
        TimingSource::GpuTimestamps
    } else {
        TimingSource::WallClock
    };

    // Each variant's kernels are compiled once, for its kernel table and its GEMM rounds.
    let shapes = kernel_shapes(&model.config);
    let variant_kernels = args
        .variants
        .iter()
        .map(|&variant| Kernels::new(&gpu, variant, &shapes))
        .collect::<Result<Vec<_>>>()?;
    let mut kernels = Vec::new();
    let mut challenge = Vec::new();
    let mut interventions = Vec::new();
    let mut sets = Vec::new();
    for set in BENCH_INTERVENTIONS {
        let mut list = Vec::new();
        for &(kind, text) in set {
            list.extend(Intervention::parse(kind, text, &model.config)?);
        }
        sets.push(Interventions::new(list));
    }
    for (&variant, compiled) in args.variants.iter().zip(&variant_kernels) {
        notes.step(&format!("kernels, variant {variant}"));
        kernels.extend(measure::kernels(&gpu, compiled, &model.config, &batch, args.repeats)?);
        notes.step(&format!("challenge forward, variant {variant}"));
        let engine = Engine::new(&model.weights, Some(variant), model.load_time)?;
        challenge.push(measure::challenge_forward(&engine, &batch, &plan, args.repeats)?);
        notes.step(&format!("challenge forward with interventions, variant {variant}"));
        for set in &sets {
            interventions.push(measure::intervention_cost(&engine, &batch, &plan, set, 2 * args.repeats)?);
        }
    }

    let (baseline, ratios) = match &args.baseline_python {
        None => (None, None),
        Some(python) => {
            notes.step("baseline: HF transformers and numpy on the same work (this takes a minute)");
            let started = Instant::now();
            let baseline = baseline::run(python, &args.repo, &model_dir, temp.path())?;
            notes.step(&format!("baseline done in {:.0} s", started.elapsed().as_secs_f64()));
            let mut gemm = Vec::new();
            for compiled in &variant_kernels {
                notes.step(&format!(
                    "GEMM against numpy's sgemm, variant {}: {} alternating rounds",
                    compiled.variant, args.gemm_rounds
                ));
                gemm.extend(baseline::interleaved_gemm(
                    python,
                    &args.repo,
                    &gpu,
                    compiled,
                    &model.config,
                    batch.n_tokens(),
                    args.gemm_rounds,
                )?);
            }
            let ratios = baseline::ratios(&baseline, gemm, &challenge);
            (Some(baseline), Some(ratios))
        }
    };
    Ok(BenchReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        device_type: format!("{:?}", gpu.info.device_type),
        timing_source,
        model: model_name,
        n_words: batch.n_sequences(),
        n_tokens: batch.n_tokens(),
        kernels,
        challenge,
        interventions,
        phases,
        baseline,
        ratios,
    })
}

/// The benchmarked model's folder and name: the given folder, or seeded synthetic weights written
/// into `temp` (or `save_to`).
fn prepare_model(args: &BenchArgs, temp: &Path, notes: &dyn Notes) -> Result<(PathBuf, String)> {
    Ok(match &args.model {
        BenchModel::Dir(dir) => (dir.clone(), dir.display().to_string()),
        BenchModel::Synthetic { tokenizer, save_to } => {
            notes.step("writing a synthetic GPT-Neo-125M-shaped model (seeded random weights)");
            let dir = save_to.clone().unwrap_or_else(|| temp.join("gpt-neo-125m-synthetic"));
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            GptNeoWeights::synthetic(&GptNeoConfig::gpt_neo_125m(), 125).save(&dir)?;
            std::fs::copy(tokenizer, dir.join("tokenizer.json")).with_context(|| {
                format!("cannot copy the tokenizer {}; pass --tokenizer FILE", tokenizer.display())
            })?;
            (dir, "synthetic gpt-neo-125m (seeded random weights)".to_string())
        }
    })
}

/// The `sweep` workload (see `sweep`): on the same model as the other measurements, with the
/// first of `args.variants`.
pub fn run_sweep(args: &BenchArgs, notes: &dyn Notes) -> Result<sweep::SweepBench> {
    let temp = tempfile::tempdir().context("cannot create a temporary folder for the benchmark")?;
    let (model_dir, model_name) = prepare_model(args, temp.path(), notes)?;
    let binary = sweep::own_binary()?;
    sweep::run(&model_dir, &model_name, args.variants.first().copied(), &binary, temp.path(), notes)
}

/// The report as a table for people.
pub fn render(report: &BenchReport) -> String {
    measure::render(report)
}

/// The variant the default adapter runs when none is asked for.
pub fn default_variant() -> Result<Variant> {
    Ok(Variant::best_for(&Gpu::new()?))
}

/// `repo/bench` exists: the folder the baseline scripts live in.
pub fn repo_with_bench(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|p| p.join("bench/hf_baseline.py").is_file()).map(Path::to_path_buf)
}
