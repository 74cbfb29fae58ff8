//! The measurements of `neoprobe bench` and their table.

use super::BenchReport;
use crate::engine::{Engine, LoadedModel};
use crate::gpu::{timestamps_usable, Gpu, PassTime, Recorder};
use crate::kernels::{
    AttentionShape, Epilogue, Fused, GpuLayerNorm, GpuLinear, Kernels, Rows, Scratch, Variant,
};
use crate::model::{Batch, GptNeoConfig, Hook, HookPlan, ModelDir};
use anyhow::Result;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How kernel times were taken.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum TimingSource {
    /// GPU timestamps written before and after each dispatch.
    GpuTimestamps,
    /// Host wall time around `queue.submit` and waiting for the GPU.
    WallClock,
}

/// One kernel at one shape.
#[derive(Clone, Debug, Serialize)]
pub struct KernelTiming {
    pub variant: String,
    pub kernel: String,
    pub shape: String,
    /// Median seconds over the timed runs.
    pub seconds: f64,
    /// The fastest timed run: the least disturbed by whatever else the machine runs, and the
    /// statistic numpy's sgemm is timed with (bench/hf_baseline.py).
    pub best_seconds: f64,
    /// Rates at the median time.
    pub gflops: Option<f64>,
    pub gbytes_per_s: Option<f64>,
    /// GFLOP/s at the best time.
    pub best_gflops: Option<f64>,
    /// Floating-point operations (linear: 2·t·n·k), for ratios against other implementations.
    pub flop: Option<f64>,
    /// For linear layers: (tokens, n_in, n_out).
    pub gemm: Option<(usize, usize, usize)>,
}

/// The challenge workload: the 200 words in one packed batch, forward to block 8's `c_fc`.
#[derive(Clone, Debug, Serialize)]
pub struct ChallengeTiming {
    pub variant: String,
    pub forward_seconds: f64,
    /// Host time of the forward until its last part is submitted (buffers, upload, recording; on
    /// a GPU the blocks already submitted run meanwhile).
    pub record_seconds: f64,
    pub readback_seconds: f64,
    /// Sum of the GPU times of all dispatches, from a separate timed forward (timestamps only).
    pub gpu_seconds: Option<f64>,
    pub tokens_per_second: f64,
}

/// Where the time of one whole run (as `neoprobe challenge` does it) goes.
#[derive(Clone, Debug, Serialize)]
pub struct Phases {
    pub variant: String,
    pub load_seconds: f64,
    pub pipelines_seconds: f64,
    pub upload_seconds: f64,
    pub first_forward_seconds: f64,
    pub readback_seconds: f64,
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

pub(super) fn fastest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The median and the fastest of a kernel's timed runs, in seconds.
#[derive(Clone, Copy, Debug)]
struct RunTimes {
    median: f64,
    best: f64,
}

impl RunTimes {
    fn of(samples: &[f64]) -> RunTimes {
        RunTimes { median: median(samples), best: fastest(samples) }
    }
}

/// Timed runs of each kernel: at least `repeats` and `MIN_KERNEL_RUNS`, and at least
/// `MIN_KERNEL_SECONDS` in all — the rule bench/sgemm.py times numpy's sgemm with, so the two
/// sides' times are taken alike.
const MIN_KERNEL_RUNS: usize = 10;
const MIN_KERNEL_SECONDS: f64 = 0.3;

/// Times `record` (one recording, submitted and waited for) after a warm-up, as often as
/// `MIN_KERNEL_RUNS` and `MIN_KERNEL_SECONDS` ask: the seconds of each timed run, GPU time from
/// timestamps where they are usable, else wall time.
fn time_op(
    gpu: &Gpu,
    repeats: usize,
    mut record: impl FnMut(&mut Recorder) -> Result<()>,
) -> Result<Vec<f64>> {
    let mut samples = Vec::new();
    let (mut warm, mut total) = (false, 0.0);
    while !warm || samples.len() < repeats.max(MIN_KERNEL_RUNS) || total < MIN_KERNEL_SECONDS {
        let mut rec = Recorder::new(gpu, timestamps_usable(gpu));
        record(&mut rec)?;
        let started = Instant::now();
        let passes: Vec<PassTime> = rec.finish()?;
        let wall = started.elapsed().as_secs_f64();
        if warm {
            samples.push(if passes.is_empty() { wall } else { passes.iter().map(|p| p.seconds).sum() });
            total += wall;
        }
        warm = true;
    }
    Ok(samples)
}

struct LinearCase {
    name: &'static str,
    layer: GpuLinear,
    fused: Fused,
    x: wgpu::Buffer,
    y: wgpu::Buffer,
}

/// The four linear layers of a block at the challenge batch's shapes, with random weights and
/// inputs, each run with the epilogue the forward gives it in a block no hook asks about (only
/// the output the next kernel reads is written).
pub struct LinearLayers<'k> {
    kernels: &'k Kernels,
    n_tokens: usize,
    cases: Vec<LinearCase>,
    resid: wgpu::Buffer,
    scratch: Scratch,
}

impl<'k> LinearLayers<'k> {
    pub fn new(gpu: &Gpu, kernels: &'k Kernels, config: &GptNeoConfig, n_tokens: usize) -> Result<Self> {
        let (t, h, inter) = (n_tokens, config.hidden_size, config.intermediate_size);
        let scratch = kernels.scratch(gpu, t, &[h, inter])?;
        let resid = gpu.upload("resid", bytemuck::cast_slice(&random_values(t * h, 8)))?;
        let mut cases = Vec::new();
        for (name, n_in, n_out, fused) in [
            ("linear qkv", h, 3 * h, Fused::Nothing),
            ("linear out_proj+add", h, h, Fused::ResidualAdd),
            ("linear c_fc+gelu", h, inter, Fused::Gelu),
            ("linear c_proj+add", inter, h, Fused::ResidualAdd),
        ] {
            let weight: Vec<u8> = bytemuck::cast_slice(&random_values(n_out * n_in, 1)).to_vec();
            let bias: Vec<u8> = bytemuck::cast_slice(&random_values(n_out, 2)).to_vec();
            let layer = kernels.upload_linear(gpu, name, &[&weight], Some(&bias), n_in)?;
            let x = gpu.upload("x", bytemuck::cast_slice(&random_values(t * n_in, 3)))?;
            let y = gpu.storage("y", t * n_out)?;
            cases.push(LinearCase { name, layer, fused, x, y });
        }
        Ok(LinearLayers { kernels, n_tokens, cases, resid, scratch })
    }

    /// (name, (tokens, n_in, n_out)) of each layer.
    pub fn shapes(&self) -> Vec<(&'static str, (usize, usize, usize))> {
        self.cases.iter().map(|c| (c.name, (self.n_tokens, c.layer.n_in, c.layer.n_out))).collect()
    }

    /// The seconds of each timed run of layer `index` (see `time_op`).
    pub fn time(&self, gpu: &Gpu, index: usize, repeats: usize) -> Result<Vec<f64>> {
        let case = &self.cases[index];
        let epilogue = match case.fused {
            Fused::Nothing => Epilogue::Bias,
            Fused::Gelu => Epilogue::Gelu { pre: None },
            Fused::ResidualAdd => Epilogue::Residual { resid: &self.resid, sublayer: None },
        };
        let rows = Rows { n_tokens: self.n_tokens, scratch: &self.scratch };
        time_op(gpu, repeats, |rec| self.kernels.linear(rec, &case.layer, &case.x, &case.y, epilogue, rows))
    }
}

/// Every kernel of the forward at the model's shapes for the challenge batch (and attention at
/// 600 tokens).
pub fn kernels(
    gpu: &Gpu,
    kernels: &Kernels,
    config: &GptNeoConfig,
    batch: &Batch,
    repeats: usize,
) -> Result<Vec<KernelTiming>> {
    let variant = kernels.variant;
    let (t, h) = (batch.n_tokens(), config.hidden_size);
    let scratch = kernels.scratch(gpu, t.max(600), &[h, 3 * h, config.intermediate_size])?;
    let mut rows = Vec::new();
    let row = |kernel: &str, shape: String, samples: Vec<f64>, flop: Option<f64>, bytes: Option<f64>| {
        let times = RunTimes::of(&samples);
        KernelTiming {
            variant: variant.to_string(),
            kernel: kernel.to_string(),
            shape,
            seconds: times.median,
            best_seconds: times.best,
            gflops: flop.map(|f| f / times.median / 1e9),
            gbytes_per_s: bytes.map(|b| b / times.median / 1e9),
            best_gflops: flop.map(|f| f / times.best / 1e9),
            flop,
            gemm: None,
        }
    };

    let linears = LinearLayers::new(gpu, kernels, config, t)?;
    for (index, (name, (t, n_in, n_out))) in linears.shapes().into_iter().enumerate() {
        let samples = linears.time(gpu, index, repeats)?;
        let flop = 2.0 * (t * n_in * n_out) as f64;
        let mut timing = row(name, format!("{t}×{n_in} → {n_out}"), samples, Some(flop), None);
        timing.gemm = Some((t, n_in, n_out));
        rows.push(timing);
    }
    drop(linears);

    let long = Batch::pack(&[(0..600u32).collect::<Vec<_>>()], config.max_position_embeddings)?;
    for (label, b, window) in [
        ("words", batch, None),
        ("600 tokens, global", &long, None),
        ("600 tokens, local", &long, Some(config.window_size)),
    ] {
        let n = b.n_tokens();
        let qkv = gpu.upload("qkv", bytemuck::cast_slice(&random_values(n * 3 * h, 4)))?;
        let seq_start = gpu.upload("seq_start", bytemuck::cast_slice(&b.seq_start))?;
        let z = gpu.storage("z", n * h)?;
        let shape =
            AttentionShape { n_tokens: n, n_heads: config.num_heads, head_dim: config.head_dim(), window };
        let samples =
            time_op(gpu, repeats, |rec| kernels.attention(rec, &qkv, &seq_start, &z, shape, &scratch))?;
        let keys: usize = (0..n)
            .map(|i| {
                let first = b.seq_start[i] as usize;
                let first = window.map_or(first, |w| first.max((i + 1).saturating_sub(w)));
                i + 1 - first
            })
            .sum();
        let flop = 4.0 * (config.head_dim() * config.num_heads * keys) as f64;
        rows.push(row("attention", format!("{label}: {n} tokens"), samples, Some(flop), None));
    }

    let x = gpu.upload("x", bytemuck::cast_slice(&random_values(t * h, 5)))?;
    let out = gpu.storage("out", t * h)?;
    let gamma = random_values(h, 7);
    let ln =
        GpuLayerNorm::upload(gpu, "ln", bytemuck::cast_slice(&gamma), bytemuck::cast_slice(&gamma), 1e-5)?;
    let samples = time_op(gpu, repeats, |rec| {
        kernels.layernorm(rec, &ln, &x, &out, Rows { n_tokens: t, scratch: &scratch });
        Ok(())
    })?;
    rows.push(row("layernorm", format!("{t}×{h}"), samples, None, Some((2 * t * h * 4) as f64)));
    Ok(rows)
}

/// The challenge forward on `engine`, `repeats` times after a warm-up, as `challenge` runs it
/// (untimed: one compute pass); then once more with a timestamp around every dispatch, where
/// timestamps are usable, for the GPU's busy time.
pub fn challenge_forward(
    engine: &Engine,
    batch: &Batch,
    plan: &HookPlan,
    repeats: usize,
) -> Result<ChallengeTiming> {
    let (mut forward, mut record, mut readback) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=repeats {
        let (_, times) = engine.forward(batch, plan, false)?;
        if i > 0 {
            forward.push(times.forward.as_secs_f64());
            record.push(times.record.as_secs_f64());
            readback.push(times.readback.as_secs_f64());
        }
    }
    let gpu_seconds = if timestamps_usable(&engine.gpu) {
        let (_, times) = engine.forward(batch, plan, true)?;
        Some(times.passes.iter().map(|p| p.seconds).sum())
    } else {
        None
    };
    let forward_seconds = median(&forward);
    Ok(ChallengeTiming {
        variant: engine.kernels.variant.to_string(),
        forward_seconds,
        record_seconds: median(&record),
        readback_seconds: median(&readback),
        gpu_seconds,
        tokens_per_second: batch.n_tokens() as f64 / forward_seconds,
    })
}

/// What interventions cost: the challenge forward with and without `interventions`, alternating
/// run by run so that both see the machine in the same moods.
#[derive(Clone, Debug, Serialize)]
pub struct InterventionCost {
    pub variant: String,
    /// The flags, as given.
    pub interventions: Vec<String>,
    pub pairs: usize,
    pub plain_seconds: f64,
    pub intervened_seconds: f64,
    /// The median over the pairs of intervened ÷ plain.
    pub ratio: f64,
}

/// The challenge forward plainly and with `interventions`, `pairs` alternating pairs after a
/// warm-up of each.
pub fn intervention_cost(
    engine: &Engine,
    batch: &Batch,
    plan: &HookPlan,
    interventions: &crate::model::Interventions,
    pairs: usize,
) -> Result<InterventionCost> {
    let lengths: Vec<usize> = (0..batch.n_sequences()).map(|s| batch.sequence(s).len()).collect();
    let intervened = plan.clone().with_interventions(interventions.for_run(&lengths)?);
    let (mut plain, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=pairs {
        let a = engine.forward(batch, plan, false)?.1.forward.as_secs_f64();
        let b = engine.forward(batch, &intervened, false)?.1.forward.as_secs_f64();
        if i > 0 {
            plain.push(a);
            with.push(b);
            ratios.push(b / a);
        }
    }
    Ok(InterventionCost {
        variant: engine.kernels.variant.to_string(),
        interventions: interventions.iter().map(|i| i.spec.clone()).collect(),
        pairs,
        plain_seconds: median(&plain),
        intervened_seconds: median(&with),
        ratio: median(&ratios),
    })
}

/// One run as `neoprobe challenge` does it, from the model folder to the activations on the host.
pub fn whole_run_phases(dir: &ModelDir, hook: Hook, variant: Variant) -> Result<Phases> {
    let (model, plan) = LoadedModel::load(dir, |_| HookPlan::new(&[hook]))?;
    let batch =
        Batch::pack(&super::challenge_words(&model.tokenizer)?, model.config.max_position_embeddings)?;
    let engine = Engine::new(&model.weights, Some(variant), model.load_time)?;
    drop(model);
    let (_, times) = engine.forward(&batch, &plan, false)?;
    let secs = |d: Duration| d.as_secs_f64();
    Ok(Phases {
        variant: variant.to_string(),
        load_seconds: secs(engine.times.load),
        pipelines_seconds: secs(engine.times.pipelines),
        upload_seconds: secs(engine.times.upload),
        first_forward_seconds: secs(times.forward),
        readback_seconds: secs(times.readback),
    })
}

fn ms(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1e3)
}

pub fn render(r: &BenchReport) -> String {
    let mut out = String::new();
    let source = match r.timing_source {
        TimingSource::GpuTimestamps => "GPU timestamps",
        TimingSource::WallClock => "wall clock around submit + wait (no timestamp queries)",
    };
    let _ = writeln!(out, "neoprobe bench on {} ({}, {})", r.adapter, r.backend, r.device_type);
    let _ = writeln!(
        out,
        "model: {}; challenge batch: {} words, {} tokens; kernel times: {source}",
        r.model, r.n_words, r.n_tokens
    );
    let _ = writeln!(
        out,
        "\n{:<9} {:<20} {:<34} {:>11} {:>15} {:>11} {:>15}",
        "variant", "kernel", "shape", "median", "rate", "best", "rate"
    );
    for k in &r.kernels {
        let (rate, best_rate) = match (k.gflops, k.best_gflops, k.gbytes_per_s) {
            (Some(g), Some(b), _) => (format!("{g:.2} GFLOP/s"), format!("{b:.2} GFLOP/s")),
            (_, _, Some(b)) => (format!("{b:.2} GB/s"), String::new()),
            _ => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{:<9} {:<20} {:<34} {:>11} {:>15} {:>11} {:>15}",
            k.variant,
            k.kernel,
            k.shape,
            ms(k.seconds),
            rate,
            ms(k.best_seconds),
            best_rate
        );
    }
    let _ = writeln!(out, "\nchallenge forward (200 words, one packed batch, blocks 0–8 up to c_fc):");
    for c in &r.challenge {
        let gpu = c.gpu_seconds.map(|g| format!(", GPU busy {}", ms(g))).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<9} forward {} ({:.0} tokens/s; host recording {}), readback {}{gpu}",
            c.variant,
            ms(c.forward_seconds),
            c.tokens_per_second,
            ms(c.record_seconds),
            ms(c.readback_seconds)
        );
    }
    let mut sets: Vec<&Vec<String>> = r.interventions.iter().map(|c| &c.interventions).collect();
    sets.dedup();
    sets.sort();
    sets.dedup();
    for set in sets {
        let _ =
            writeln!(out, "\nwith interventions ({}), alternating with the plain forward:", set.join(" "));
        for c in r.interventions.iter().filter(|c| &c.interventions == set) {
            let _ = writeln!(
                out,
                "  {:<9} {} vs {} plain: × {:.3} (median of {} pairs; target ≤ 1.05)",
                c.variant,
                ms(c.intervened_seconds),
                ms(c.plain_seconds),
                c.ratio,
                c.pairs
            );
        }
    }
    let p = &r.phases;
    let _ = writeln!(
        out,
        "\nphases of a whole run ({}): load {}, pipelines {}, upload {}, first forward {}, readback {}",
        p.variant,
        ms(p.load_seconds),
        ms(p.pipelines_seconds),
        ms(p.upload_seconds),
        ms(p.first_forward_seconds),
        ms(p.readback_seconds)
    );
    if let (Some(b), Some(ratios)) = (&r.baseline, &r.ratios) {
        out.push_str(&super::baseline::render(b, ratios));
    }
    out
}
