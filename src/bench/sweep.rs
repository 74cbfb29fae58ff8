//! The `sweep` workload of `neoprobe bench`: the vocabulary sweep's wall time and tokens/s
//! against its target, and the corpus sweep's peak resident memory on a large text against a
//! small one (the ratio shows whether memory grows with the corpus).

use super::baseline::measure_process;
use crate::engine::ModelSource;
use crate::hub::FetchOptions;
use crate::kernels::Variant;
use crate::model::DEFAULT_HOOK;
use crate::notes::Notes;
use crate::sweep::vocab::{sweep_vocab, VocabArgs};
use crate::sweep::{SweepCommon, DEFAULT_TOP_K};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Wall-time targets of the vocabulary sweep (model load excluded): on a CPU driver, and on a GPU.
pub const VOCAB_TARGET_CPU_SECONDS: f64 = 180.0;
pub const VOCAB_TARGET_GPU_SECONDS: f64 = 2.0;
/// Sizes of the corpus texts whose peak memory is compared, and the ratio the target allows.
pub const CORPUS_SMALL_BYTES: usize = 40_000;
pub const CORPUS_LARGE_BYTES: usize = 200_000;
pub const RSS_RATIO_TARGET: f64 = 1.1;

/// The vocabulary sweep, timed.
#[derive(Clone, Debug, Serialize)]
pub struct VocabTiming {
    pub tokens: usize,
    pub batches: usize,
    pub batch_tokens: usize,
    /// From the first batch to the last one's lists (the model's load and upload excluded).
    pub sweep_seconds: f64,
    /// The whole call: model load, upload, pipelines, sweep, files.
    pub total_seconds: f64,
    pub tokens_per_second: f64,
    pub target_seconds: f64,
    /// `sweep_seconds / target_seconds`: at most 1 meets the target.
    pub ratio_to_target: f64,
}

/// One `neoprobe sweep corpus` process.
#[derive(Clone, Debug, Serialize)]
pub struct CorpusRun {
    pub text_bytes: usize,
    pub wall_seconds: f64,
    pub peak_rss_mib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepBench {
    pub adapter: String,
    pub model: String,
    pub vocab: VocabTiming,
    pub corpus_small: CorpusRun,
    pub corpus_large: CorpusRun,
    /// Peak memory of the large text's sweep ÷ the small one's.
    pub rss_ratio: f64,
    pub rss_ratio_target: f64,
}

/// English prose of `bytes` bytes for the corpus sweeps: this repository's README, repeated.
pub fn corpus_text(bytes: usize) -> String {
    let source = include_str!("../../README.md");
    let mut text = String::with_capacity(bytes + source.len());
    while text.len() < bytes {
        text.push_str(source);
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// Runs the workload on the model in `model_dir` with the kernel `variant`; `binary` is the
/// neoprobe executable the corpus sweeps run as (their own processes, for their peak memory).
pub fn run(
    model_dir: &Path,
    model_name: &str,
    variant: Option<Variant>,
    binary: &Path,
    temp: &Path,
    notes: &dyn Notes,
) -> Result<SweepBench> {
    notes.step("vocabulary sweep: every token alone (minutes on a CPU driver)");
    let out = temp.join("vocab-sweep");
    let common = SweepCommon {
        model: ModelSource::Dir(model_dir.to_path_buf()),
        fetch: FetchOptions::default(),
        out_dir: out,
        force: true,
        batch_tokens: None,
        variant,
    };
    let started = std::time::Instant::now();
    let outcome = sweep_vocab(
        &VocabArgs { common, hook: DEFAULT_HOOK.to_string(), prefix_space: false, top_k: DEFAULT_TOP_K },
        &crate::notes::Silent,
    )?;
    let total_seconds = started.elapsed().as_secs_f64();
    let (stats, batch_tokens) = outcome.streamed.context("the vocabulary sweep reports its batches")?;
    let gpu = crate::gpu::Gpu::new()?;
    let on_cpu = gpu.info.device_type == wgpu::DeviceType::Cpu;
    let target_seconds = if on_cpu { VOCAB_TARGET_CPU_SECONDS } else { VOCAB_TARGET_GPU_SECONDS };
    let sweep_seconds = stats.wall.as_secs_f64();
    let vocab = VocabTiming {
        tokens: stats.tokens,
        batches: stats.batches,
        batch_tokens,
        sweep_seconds,
        total_seconds,
        tokens_per_second: stats.tokens as f64 / sweep_seconds,
        target_seconds,
        ratio_to_target: sweep_seconds / target_seconds,
    };

    let mut corpus = Vec::new();
    for bytes in [CORPUS_SMALL_BYTES, CORPUS_LARGE_BYTES] {
        notes.step(&format!("corpus sweep of a {} KB text, as its own process (peak memory)", bytes / 1000));
        let text = temp.join(format!("corpus-{bytes}.txt"));
        std::fs::write(&text, corpus_text(bytes))
            .with_context(|| format!("cannot write {}", text.display()))?;
        let mut command = Command::new(binary);
        command.arg("sweep").arg("corpus").arg("--model-dir").arg(model_dir).arg("--text").arg(&text);
        command.arg("--out-dir").arg(temp.join(format!("corpus-sweep-{bytes}"))).arg("--force");
        if let Some(variant) = variant {
            command.arg("--kernel-variant").arg(variant.to_string());
        }
        let (wall_seconds, peak_rss_mib) = measure_process(&mut command)?;
        corpus.push(CorpusRun { text_bytes: bytes, wall_seconds, peak_rss_mib });
    }
    let corpus_large = corpus.pop().expect("two corpus runs");
    let corpus_small = corpus.pop().expect("two corpus runs");
    Ok(SweepBench {
        adapter: gpu.adapter_name(),
        model: model_name.to_string(),
        vocab,
        rss_ratio: corpus_large.peak_rss_mib / corpus_small.peak_rss_mib,
        rss_ratio_target: RSS_RATIO_TARGET,
        corpus_small,
        corpus_large,
    })
}

/// The workload's report for people.
pub fn render(r: &SweepBench) -> String {
    let mut s = String::new();
    let v = &r.vocab;
    let _ = writeln!(s, "neoprobe bench, sweep workload, on {}; model: {}", r.adapter, r.model);
    let _ = writeln!(
        s,
        "vocabulary sweep: {} tokens alone in {} batches of at most {}: {:.1} s ({:.0} tokens/s; {:.1} s with the model's load), target {} s: ratio {:.2}{}",
        v.tokens,
        v.batches,
        v.batch_tokens,
        v.sweep_seconds,
        v.tokens_per_second,
        v.total_seconds,
        v.target_seconds,
        v.ratio_to_target,
        if v.ratio_to_target <= 1.0 { " (met)" } else { " (missed)" }
    );
    for c in [&r.corpus_small, &r.corpus_large] {
        let _ = writeln!(
            s,
            "corpus sweep of a {} KB text: {:.1} s, peak resident memory {:.0} MiB",
            c.text_bytes / 1000,
            c.wall_seconds,
            c.peak_rss_mib
        );
    }
    let _ = writeln!(
        s,
        "peak memory {} KB ÷ {} KB: {:.3} (target at most {}{})",
        r.corpus_large.text_bytes / 1000,
        r.corpus_small.text_bytes / 1000,
        r.rss_ratio,
        r.rss_ratio_target,
        if r.rss_ratio <= r.rss_ratio_target { ", met" } else { ", missed" }
    );
    s
}

/// The current executable, for the corpus sweeps' processes.
pub fn own_binary() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the neoprobe executable to run the corpus sweeps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_texts_have_the_asked_size_in_whole_characters() {
        for bytes in [CORPUS_SMALL_BYTES, CORPUS_LARGE_BYTES, 12_345] {
            let text = corpus_text(bytes);
            assert!(text.len() <= bytes && text.len() + 4 > bytes, "{} for {bytes}", text.len());
        }
        assert!(corpus_text(1000).starts_with("# neoprobe"));
    }
}
