//! The baseline of `neoprobe bench --baseline`: HF transformers and numpy doing the same work on
//! this machine (`bench/hf_baseline.py`), and the seed's experiment as a whole Python process
//! (`bench/seed_experiment.py`) against a whole `neoprobe challenge` process.

use super::{ChallengeTiming, KernelTiming};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A whole process: its wall time and peak resident memory.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessRun {
    pub command: String,
    /// The faster of two runs (the first also warms the page cache for the second).
    pub wall_seconds: f64,
    /// The larger peak resident set of the two runs, in MiB.
    pub peak_rss_mib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    /// `bench/hf_baseline.py --json`, as it printed it.
    pub hf: Value,
    pub seed_process: ProcessRun,
    pub neoprobe_process: ProcessRun,
}

/// One GEMM shape: neoprobe's linear kernel against numpy's sgemm, each at its fastest timed
/// run (`best`) and at its median run. Both sides are timed by the same rule (at least 10 runs
/// and 0.3 s), so the two best times are alike: the runs least disturbed by the rest of the
/// machine.
#[derive(Clone, Debug, Serialize)]
pub struct GemmRatio {
    pub variant: String,
    pub shape: (usize, usize, usize),
    pub neoprobe_best_gflops: f64,
    pub numpy_best_gflops: f64,
    pub best_ratio: f64,
    pub neoprobe_median_gflops: f64,
    pub numpy_median_gflops: f64,
    pub median_ratio: f64,
}

/// neoprobe ÷ baseline. Times: below 1 is faster. GFLOP/s: above 1 is faster.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineRatios {
    pub gemm: Vec<GemmRatio>,
    /// Challenge forward time ÷ HF's, per variant, for each HF way of running it.
    pub forward: Vec<(String, String, f64)>,
    pub process_wall: f64,
    pub process_peak_rss: f64,
}

/// Runs both baseline scripts and both whole processes.
pub fn run(python: &str, repo: &Path, model_dir: &Path, temp: &Path) -> Result<Baseline> {
    let words = [repo.join("data/verbs.txt"), repo.join("data/nouns.txt")];
    // A synthetic model is on disk too (written for the whole-process runs), so HF always reads
    // the same files neoprobe reads.
    let mut hf = Command::new(python);
    hf.arg(repo.join("bench/hf_baseline.py")).arg("--model-dir").arg(model_dir);
    hf.arg("--words").args(&words).arg("--json").stderr(Stdio::inherit());
    let output = hf
        .output()
        .with_context(|| format!("cannot run {python}; pass --python PATH to a Python with torch"))?;
    if !output.status.success() {
        bail!("bench/hf_baseline.py failed ({}); is torch installed for {python}?", output.status);
    }
    let hf: Value = serde_json::from_slice(&output.stdout).context("bench/hf_baseline.py printed no JSON")?;

    let out_dir = temp.join("challenge-out");
    let exe = std::env::current_exe()?;
    let mut neoprobe = Command::new(&exe);
    neoprobe.arg("challenge").arg("--model-dir").arg(model_dir).arg("--out-dir").arg(&out_dir).arg("--force");
    let mut seed = Command::new(python);
    seed.arg(repo.join("bench/seed_experiment.py"))
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--verbs")
        .arg(&words[0])
        .arg("--nouns")
        .arg(&words[1])
        .arg("--out")
        .arg(temp.join("seed.npy"));
    let neoprobe_process = measure_twice(&mut neoprobe)?;
    let seed_process = measure_twice(&mut seed)?;
    Ok(Baseline { hf, seed_process, neoprobe_process })
}

fn measure_twice(command: &mut Command) -> Result<ProcessRun> {
    let (a, b) = (measure_process(command)?, measure_process(command)?);
    Ok(ProcessRun { command: format!("{command:?}"), wall_seconds: a.0.min(b.0), peak_rss_mib: a.1.max(b.1) })
}

/// Runs `command` to completion (its output discarded) → (wall seconds, peak RSS in MiB).
///
/// The peak is the child's `VmHWM` (Linux), read every few milliseconds while it runs. Its
/// `ru_maxrss` would not do: a spawned child shares this (large) process's memory until it
/// executes its program, and the kernel counts that toward the child's maximum.
fn measure_process(command: &mut Command) -> Result<(f64, f64)> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let wall = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    if peak_kib == 0 {
        bail!("cannot read the peak memory of {command:?} from /proc (Linux only)");
    }
    Ok((wall, peak_kib as f64 / 1024.0))
}

fn hf_time(hf: &Value, name: &str) -> Option<f64> {
    hf["times"][name]["median_s"].as_f64()
}

pub fn ratios(
    baseline: &Baseline,
    kernels: &[KernelTiming],
    challenge: &[ChallengeTiming],
) -> BaselineRatios {
    let mut gemm = Vec::new();
    for row in baseline.hf["sgemm"].as_array().into_iter().flatten() {
        let dims = (row["m"].as_u64(), row["k"].as_u64(), row["n"].as_u64());
        let numpy = (row["numpy_gflops"].as_f64(), row["numpy_median_gflops"].as_f64());
        let ((Some(m), Some(k), Some(n)), (Some(numpy_best), Some(numpy_median))) = (dims, numpy) else {
            continue;
        };
        for kernel in kernels.iter().filter(|t| t.gemm == Some((m as usize, k as usize, n as usize))) {
            let (best, median) = (kernel.best_gflops.unwrap_or(0.0), kernel.gflops.unwrap_or(0.0));
            gemm.push(GemmRatio {
                variant: kernel.variant.clone(),
                shape: (m as usize, k as usize, n as usize),
                neoprobe_best_gflops: best,
                numpy_best_gflops: numpy_best,
                best_ratio: best / numpy_best,
                neoprobe_median_gflops: median,
                numpy_median_gflops: numpy_median,
                median_ratio: median / numpy_median,
            });
        }
    }
    let mut forward = Vec::new();
    for c in challenge {
        for name in ["seed_loop", "batched_padded", "batched_h9"] {
            if let Some(hf) = hf_time(&baseline.hf, name) {
                forward.push((c.variant.clone(), name.to_string(), c.forward_seconds / hf));
            }
        }
    }
    BaselineRatios {
        gemm,
        forward,
        process_wall: baseline.neoprobe_process.wall_seconds / baseline.seed_process.wall_seconds,
        process_peak_rss: baseline.neoprobe_process.peak_rss_mib / baseline.seed_process.peak_rss_mib,
    }
}

pub fn render(b: &Baseline, r: &BaselineRatios) -> String {
    let mut out = String::new();
    let versions = &b.hf["versions"];
    let _ = writeln!(
        out,
        "\nbaseline (same machine, same words): torch {} with {} threads, numpy {}",
        versions["torch"].as_str().unwrap_or("?"),
        b.hf["threads"],
        versions["numpy"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "  GEMM (neoprobe linear ÷ numpy sgemm, GFLOP/s; best run ÷ best run, median ÷ median):"
    );
    for g in &r.gemm {
        let (m, k, n) = g.shape;
        let _ = writeln!(
            out,
            "    {:<8} {m}×{k} · {k}×{n}: best {:.2} vs {:.1} → ratio {:.3}; median {:.2} vs {:.1} → ratio {:.3}",
            g.variant,
            g.neoprobe_best_gflops,
            g.numpy_best_gflops,
            g.best_ratio,
            g.neoprobe_median_gflops,
            g.numpy_median_gflops,
            g.median_ratio
        );
    }
    let _ = writeln!(out, "  challenge forward (neoprobe time ÷ HF time; below 1 = neoprobe faster):");
    for (variant, name, ratio) in &r.forward {
        let hf = hf_time(&b.hf, name).map(|s| format!("{:.3} s", s)).unwrap_or_default();
        let _ = writeln!(out, "    {variant:<8} vs HF {name:<15} ({hf}): {ratio:.3}");
    }
    let _ = writeln!(
        out,
        "  whole process: neoprobe challenge {:.2} s, {:.0} MiB peak; HF seed experiment {:.2} s, {:.0} MiB peak",
        b.neoprobe_process.wall_seconds,
        b.neoprobe_process.peak_rss_mib,
        b.seed_process.wall_seconds,
        b.seed_process.peak_rss_mib
    );
    let _ = writeln!(out, "    ratios: wall {:.3}, peak RSS {:.3}", r.process_wall, r.process_peak_rss);
    out
}
