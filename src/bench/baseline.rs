//! The baseline of `neoprobe bench --baseline`: HF transformers and numpy doing the same work on
//! this machine (`bench/hf_baseline.py`), and the seed's experiment as a whole Python process
//! (`bench/seed_experiment.py`) against a whole `neoprobe challenge` process.

use super::measure::{fastest, median, LinearLayers};
use super::ChallengeTiming;
use crate::gpu::Gpu;
use crate::kernels::Kernels;
use crate::model::GptNeoConfig;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
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

/// One GEMM shape: neoprobe's linear kernel against numpy's sgemm, timed in alternating rounds
/// (`interleaved_gemm`), each side by the same rule (at least 10 runs and 0.3 s per round). `best`
/// is each side's fastest run of all rounds, the run least disturbed by the rest of the machine;
/// `median` is over all runs of all rounds.
#[derive(Clone, Debug, Serialize)]
pub struct GemmRatio {
    pub variant: String,
    pub shape: (usize, usize, usize),
    pub rounds: usize,
    pub neoprobe_runs: usize,
    pub numpy_runs: usize,
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

/// numpy's sgemm in a child process (bench/sgemm.py) that times all shapes once per request.
struct NumpyRounds {
    child: Child,
    requests: ChildStdin,
    replies: BufReader<ChildStdout>,
}

impl NumpyRounds {
    fn start(python: &str, repo: &Path, shapes: &[(usize, usize, usize)]) -> Result<NumpyRounds> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut command = Command::new(python);
        command.arg(repo.join("bench/sgemm.py")).arg("--threads").arg(threads.to_string()).arg("--shapes");
        command.args(shapes.iter().map(|(m, k, n)| format!("{m}x{k}x{n}")));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {python}; pass --python PATH to a Python with numpy"))?;
        let (Some(requests), Some(replies)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("bench/sgemm.py started without its pipes");
        };
        let mut rounds = NumpyRounds { child, requests, replies: BufReader::new(replies) };
        let ready = rounds.reply()?;
        if ready.trim() != "ready" {
            bail!(
                "bench/sgemm.py did not start (it said {:?}); is numpy installed for {python}?",
                ready.trim()
            );
        }
        Ok(rounds)
    }

    fn reply(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.replies.read_line(&mut line)? == 0 {
            bail!("bench/sgemm.py exited ({}); is numpy installed?", self.child.wait()?);
        }
        Ok(line)
    }

    /// One round: the seconds of each timed run, per shape.
    fn round(&mut self) -> Result<Vec<Vec<f64>>> {
        self.requests.write_all(b"round\n")?;
        self.requests.flush()?;
        let reply: Value =
            serde_json::from_str(&self.reply()?).context("bench/sgemm.py replied with no JSON")?;
        serde_json::from_value(reply["samples_s"].clone())
            .with_context(|| format!("bench/sgemm.py replied {reply} instead of samples"))
    }
}

impl Drop for NumpyRounds {
    fn drop(&mut self) {
        // Its stdin closes with `requests`; until then it waits for the next request.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// neoprobe's four linear layers on `kernels` against numpy's sgemm at the same shapes, in
/// `rounds` alternating rounds: neoprobe times every layer, then numpy every shape, and again.
/// A shared machine's speed drifts by more than the ratio measured (bench/README.md), so two
/// sides timed minutes apart compare two different machines; alternating gives each side the
/// same stretches of time.
pub fn interleaved_gemm(
    python: &str,
    repo: &Path,
    gpu: &Gpu,
    kernels: &Kernels,
    config: &GptNeoConfig,
    n_tokens: usize,
    rounds: usize,
) -> Result<Vec<GemmRatio>> {
    let layers = LinearLayers::new(gpu, kernels, config, n_tokens)?;
    let shapes: Vec<(usize, usize, usize)> = layers.shapes().into_iter().map(|(_, shape)| shape).collect();
    let mut numpy = NumpyRounds::start(python, repo, &shapes)?;
    let mut ours = vec![Vec::new(); shapes.len()];
    let mut theirs = vec![Vec::new(); shapes.len()];
    for _ in 0..rounds {
        for (index, samples) in ours.iter_mut().enumerate() {
            samples.extend(layers.time(gpu, index, 1)?);
        }
        let round = numpy.round()?;
        if round.len() != shapes.len() {
            bail!("bench/sgemm.py timed {} shapes, asked for {}", round.len(), shapes.len());
        }
        for (samples, new) in theirs.iter_mut().zip(round) {
            samples.extend(new);
        }
    }
    let gflops = |(m, k, n): (usize, usize, usize), seconds: f64| 2.0 * (m * k * n) as f64 / seconds / 1e9;
    Ok(shapes
        .iter()
        .zip(ours.into_iter().zip(theirs))
        .map(|(&shape, (ours, theirs))| {
            let (ours_best, theirs_best) = (fastest(&ours), fastest(&theirs));
            let (ours_median, theirs_median) = (median(&ours), median(&theirs));
            GemmRatio {
                variant: kernels.variant.to_string(),
                shape,
                rounds,
                neoprobe_runs: ours.len(),
                numpy_runs: theirs.len(),
                neoprobe_best_gflops: gflops(shape, ours_best),
                numpy_best_gflops: gflops(shape, theirs_best),
                best_ratio: theirs_best / ours_best,
                neoprobe_median_gflops: gflops(shape, ours_median),
                numpy_median_gflops: gflops(shape, theirs_median),
                median_ratio: theirs_median / ours_median,
            }
        })
        .collect())
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
pub(super) fn measure_process(command: &mut Command) -> Result<(f64, f64)> {
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

pub fn ratios(baseline: &Baseline, gemm: Vec<GemmRatio>, challenge: &[ChallengeTiming]) -> BaselineRatios {
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
    let rounds = r.gemm.first().map_or(0, |g| g.rounds);
    let _ = writeln!(
        out,
        "  GEMM (neoprobe linear ÷ numpy sgemm, GFLOP/s, {rounds} alternating rounds; best run ÷ best run, \
         median ÷ median):"
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

#[cfg(test)]
mod tests {
    use super::NumpyRounds;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// A stand-in for the Python interpreter: a shell script that ignores its arguments (the path
    /// of bench/sgemm.py and the shapes) and speaks `body`.
    fn fake_python(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-python");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Starts the rounds with a script just written. Another test thread that forks while the
    /// script is still open for writing keeps it open in its child until that child execs, and
    /// running the script then fails with "Text file busy": such starts are retried.
    fn start(python: &Path, dir: &Path) -> anyhow::Result<NumpyRounds> {
        for _ in 0..100 {
            match NumpyRounds::start(python.to_str().unwrap(), dir, &SHAPES) {
                Err(e) if format!("{e:#}").contains("Text file busy") => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                started => return started,
            }
        }
        panic!("{} stayed busy", python.display())
    }

    const SHAPES: [(usize, usize, usize); 2] = [(2, 3, 4), (5, 6, 7)];

    #[test]
    fn rounds_return_each_shapes_samples_once_per_request() {
        let dir = tempfile::tempdir().unwrap();
        // Answers every "round" with samples that count the rounds, so a reply read twice or a
        // request left unanswered shows.
        let python = fake_python(
            dir.path(),
            r#"echo ready
n=0
while read line; do
  n=$((n + 1))
  if [ "$line" = round ]; then echo "{\"samples_s\": [[$n, 0.5], [$n]]}"; else echo '{"error": "?"}'; fi
done"#,
        );
        let mut rounds = start(&python, dir.path()).unwrap();
        assert_eq!(rounds.round().unwrap(), vec![vec![1.0, 0.5], vec![1.0]]);
        assert_eq!(rounds.round().unwrap(), vec![vec![2.0, 0.5], vec![2.0]]);
    }

    #[test]
    fn a_helper_that_never_starts_is_an_error_naming_numpy() {
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(dir.path(), "echo 'ModuleNotFoundError: numpy' >&2; exit 1");
        let err = start(&python, dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("numpy"), "{err:#}");
    }

    #[test]
    fn a_reply_without_samples_is_an_error_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(dir.path(), "echo ready; read line; echo '{\"error\": \"out of memory\"}'");
        let mut rounds = start(&python, dir.path()).unwrap();
        let err = rounds.round().unwrap_err();
        assert!(format!("{err:#}").contains("out of memory"), "{err:#}");
    }

    #[test]
    fn a_missing_interpreter_is_an_error_naming_the_python_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-python");
        let err = NumpyRounds::start(missing.to_str().unwrap(), dir.path(), &SHAPES).err().unwrap();
        assert!(format!("{err:#}").contains("--python"), "{err:#}");
    }
}
