//! The sweeps as a user runs them, on the tiny fixture model (hidden 64, 256 MLP neurons, the
//! whole GPT-2 vocabulary of 50257 tokens): each sweep's lists against a brute-force
//! computation (every token, every neuron), shards merged against one run byte for byte, the
//! challenge's permutation test against an independent recomputation, its report's neuron
//! section, help snapshots, and every bad input's one-line error with nothing left behind.

mod common;

use neoprobe::engine::{Engine, LoadedModel};
use neoprobe::model::{Batch, Hook, HookPlan, HookPoint, ModelDir};
use neoprobe::sweep::files::SweepFile;
use neoprobe::sweep::sample::{
    hist_bin, interval_of_bin, sequence_hash, HIST_BINS, INTERVALS, SAMPLES_PER_INTERVAL,
};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use serde_json::Value;
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const K: usize = 20;
const WIDTH: usize = 256;
const VOCAB: usize = 50257;
/// Tokens per corpus sequence in these tests: several sequences per text, longer than the
/// model's attention window of 8.
const CONTEXT: usize = 24;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_model() -> PathBuf {
    repo_root().join("fixtures/tiny-neo")
}

fn workdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_success(&self, what: &str) -> &Self {
        assert!(self.success, "{what} failed ({:?}):\n{}\n{}", self.code, self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "{what}: {}", self.stderr);
        self
    }

    /// Non-zero exit and exactly one stderr line, `error: …`, without panic; returns that line.
    fn assert_one_line_error(&self, what: &str) -> &str {
        assert!(!self.success, "{what}: expected a failure, got success:\n{}", self.stdout);
        assert_eq!(self.code, Some(1), "{what}: exit code; stderr:\n{}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: stderr is not one line:\n{}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{what}: {}", lines[0]);
        assert!(self.stdout.is_empty(), "{what}: stdout: {}", self.stdout);
        lines[0]
    }
}

fn neoprobe(cwd: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_neoprobe")).args(args).current_dir(cwd).output().unwrap();
    Run {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Plain English generated from the fixture word lists: sentences of a few patterns, seeded.
fn generated_text(sentences: usize, seed: u64) -> String {
    let read = |path: &str| -> Vec<String> {
        fs::read_to_string(repo_root().join(path)).unwrap().lines().map(|l| l.trim().to_string()).collect()
    };
    let (verbs, nouns) = (read("data/verbs.txt"), read("data/nouns.txt"));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut pick = |list: &[String]| list.choose(&mut rng).unwrap().clone();
    let mut text = String::new();
    for i in 0..sentences {
        let (n1, v, n2, n3) = (pick(&nouns), pick(&verbs), pick(&nouns), pick(&nouns));
        let sentence = match i % 4 {
            0 => format!("The {n1} will {v} the {n2} before the {n3} comes back."),
            1 => format!("Every {n1} wanted to {v} a {n2}, and nobody asked why."),
            2 => format!("When the {n1} began to {v}, the {n2} and the {n3} stayed home."),
            _ => format!("\"Did you {v} it?\" said the {n1} to the {n2}.\n\n"),
        };
        text.push_str(&sentence);
        text.push(' ');
    }
    text
}

/// The sweeps every test below reads, run once: the vocabulary, a two-text corpus whole and in
/// three shards (each with its own batch size) merged, and the logits of block 8.
struct Sweeps {
    dir: tempfile::TempDir,
}

impl Sweeps {
    fn get() -> &'static Sweeps {
        static SWEEPS: OnceLock<Sweeps> = OnceLock::new();
        SWEEPS.get_or_init(|| {
            let dir =
                tempfile::Builder::new().prefix("sweeps-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let cwd = dir.path();
            fs::write(cwd.join("a.txt"), generated_text(120, 1)).unwrap();
            fs::write(cwd.join("b.txt"), generated_text(37, 2)).unwrap();
            let model = tiny_model();
            let model = model.to_str().unwrap();
            neoprobe(cwd, &["sweep", "vocab", "--model-dir", model, "--out-dir", "vocab"])
                .assert_success("vocab");
            let context = CONTEXT.to_string();
            let corpus = |out: &str, extra: &[&str]| {
                let mut args = vec![
                    "sweep",
                    "corpus",
                    "--model-dir",
                    model,
                    "--text",
                    "a.txt",
                    "b.txt",
                    "--context",
                    &context,
                    "--out-dir",
                    out,
                ];
                args.extend_from_slice(extra);
                neoprobe(cwd, &args).assert_success(out);
            };
            corpus("corpus", &[]);
            corpus("shard0", &["--shard", "0/3", "--batch-tokens", "24"]);
            corpus("shard1", &["--shard", "1/3", "--batch-tokens", "100"]);
            corpus("shard2", &["--shard", "2/3"]);
            neoprobe(cwd, &["sweep", "merge", "--out-dir", "merged", "shard2", "shard0", "shard1"])
                .assert_success("merge");
            neoprobe(cwd, &["sweep", "logits", "--model-dir", model, "--out-dir", "logits"])
                .assert_success("logits");
            Sweeps { dir }
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn sweep_file(path: &Path) -> SweepFile {
    SweepFile::read(path).unwrap()
}

/// Per neuron, the `K` best (value, key) of `values(key)` under the sweeps' order: value
/// descending (`top`) or ascending, equal values by ascending key.
fn brute_force_lists(
    n_keys: usize,
    top: bool,
    value: impl Fn(usize, usize) -> f32,
) -> Vec<Vec<(f32, usize)>> {
    (0..WIDTH)
        .map(|neuron| {
            let mut all: Vec<(f32, usize)> = (0..n_keys).map(|key| (value(key, neuron), key)).collect();
            all.sort_by(|a, b| {
                let by_value = if top { b.0.total_cmp(&a.0) } else { a.0.total_cmp(&b.0) };
                by_value.then(a.1.cmp(&b.1))
            });
            all.truncate(K);
            all
        })
        .collect()
}

/// The tiny model loaded with a plan for block 8's `mlp.hook_pre`, on the default engine.
fn tiny_engine() -> (LoadedModel, HookPlan, Engine) {
    let dir = ModelDir::open(&tiny_model()).unwrap();
    let (model, plan) = LoadedModel::load(&dir, |_| HookPlan::new(&[hook()])).unwrap();
    let engine = Engine::new(&model.weights, None, Default::default()).unwrap();
    (model, plan, engine)
}

fn hook() -> Hook {
    Hook::block(8, HookPoint::MlpPre)
}

#[test]
fn vocab_sweep_equals_a_brute_force_over_every_token_and_neuron() {
    let file = sweep_file(&Sweeps::get().path("vocab/vocab_topk.safetensors"));
    let path = Path::new("vocab_topk.safetensors");
    assert_eq!(file.metadata["hook"], "blocks.8.mlp.hook_pre");
    assert_eq!(file.metadata["top_k"], "20");
    assert_eq!(file.metadata["prefix_space"], "false");
    assert_eq!(file.metadata["n_tokens"], VOCAB.to_string());
    assert_eq!(
        file.metadata["model_sha256"],
        neoprobe::sweep::sha256_file(&tiny_model().join("model.safetensors")).unwrap()
    );

    // Brute force: every token through plain forwards of 4096 one-token sequences (not the
    // sweep's batching), the whole [vocabulary × neurons] matrix kept, each neuron sorted.
    let (_, plan, engine) = tiny_engine();
    let mut all = Vec::with_capacity(VOCAB * WIDTH);
    for start in (0..VOCAB).step_by(4096) {
        let ids: Vec<Vec<u32>> = (start..(start + 4096).min(VOCAB)).map(|id| vec![id as u32]).collect();
        let batch = Batch::pack(&ids, 2048).unwrap();
        let (mut acts, _) = engine.forward(&batch, &plan, false).unwrap();
        all.extend(acts.take(hook()).unwrap());
    }
    let value = |token: usize, neuron: usize| all[token * WIDTH + neuron];
    let shape = [WIDTH, K];
    for (top, ids, values) in [(true, "top_ids", "top_values"), (false, "bottom_ids", "bottom_values")] {
        let expected = brute_force_lists(VOCAB, top, value);
        let got_ids = file.i32s(ids, &shape, path).unwrap();
        let got_values = file.f32s(values, &shape, path).unwrap();
        for (neuron, list) in expected.iter().enumerate() {
            for (rank, &(v, id)) in list.iter().enumerate() {
                let at = neuron * K + rank;
                assert_eq!(
                    (got_ids[at] as usize, got_values[at].to_bits()),
                    (id, v.to_bits()),
                    "{ids} of neuron {neuron} at rank {rank}"
                );
            }
        }
    }
    let (mean, std) = (file.f32s("mean", &[WIDTH], path).unwrap(), file.f32s("std", &[WIDTH], path).unwrap());
    for neuron in 0..WIDTH {
        let column: Vec<f64> = (0..VOCAB).map(|t| value(t, neuron) as f64).collect();
        let m = column.iter().sum::<f64>() / VOCAB as f64;
        let sd = (column.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (VOCAB - 1) as f64).sqrt();
        // Both are f64 statistics (two-pass here, one-pass in the sweep) stored as f32: they may
        // round to neighbouring f32 values, no further apart.
        for (what, got, want) in [("mean", mean[neuron], m), ("std", std[neuron], sd)] {
            let ulp = (want as f32).abs() * f32::EPSILON;
            assert!((got as f64 - want).abs() <= ulp as f64, "{what} of neuron {neuron}: {got} vs {want}");
        }
    }
    let md = fs::read_to_string(Sweeps::get().path("vocab/vocab.md")).unwrap();
    assert!(md.contains("| neuron | selectivity | top | mean | SD | top 8 tokens |"), "{md}");
}

#[test]
fn vocab_sweep_with_a_prefix_space_runs_the_spaced_single_tokens() {
    let cwd = workdir();
    let model = tiny_model();
    neoprobe(
        cwd.path(),
        &[
            "sweep",
            "vocab",
            "--model-dir",
            model.to_str().unwrap(),
            "--prefix-space",
            "--top-k",
            "3",
            "--out-dir",
            "v",
        ],
    )
    .assert_success("vocab --prefix-space");
    let file = sweep_file(&cwd.path().join("v/vocab_topk.safetensors"));
    // Which ids run, from the tokenizer directly: those that " " + a token's text is alone.
    let tokenizer = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    let mut spaced = std::collections::BTreeSet::new();
    for id in 0..VOCAB as u32 {
        let text = tokenizer.decode(&[id], false).unwrap();
        if text.is_empty() {
            continue;
        }
        if let [single] = tokenizer.encode(format!(" {text}"), false).unwrap().get_ids() {
            spaced.insert(*single);
        }
    }
    assert!(spaced.contains(&3290), "\" dog\" runs (from \"dog\")");
    assert_eq!(file.metadata["n_tokens"], spaced.len().to_string());
    assert_eq!(file.metadata["skipped"], (VOCAB - spaced.len()).to_string());
    let path = Path::new("v");
    for name in ["top_ids", "bottom_ids"] {
        for id in file.i32s(name, &[WIDTH, 3], path).unwrap() {
            assert!(
                spaced.contains(&(*id as u32)),
                "{name} lists {id}, which does not run with a prefix space"
            );
        }
    }
}

/// The corpus texts tokenized and cut as the sweep documents it: per text, consecutive
/// sequences of CONTEXT tokens, numbered across the texts.
fn corpus_sequences(model: &LoadedModel) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for name in ["a.txt", "b.txt"] {
        let text = fs::read_to_string(Sweeps::get().path(name)).unwrap();
        let ids = model.tokenizer.encode(&text).unwrap();
        out.extend(ids.chunks(CONTEXT).map(<[u32]>::to_vec));
    }
    out
}

#[test]
fn corpus_sweep_equals_a_brute_force_over_every_sequence_and_neuron() {
    let sweeps = Sweeps::get();
    let (model, plan, engine) = tiny_engine();
    let sequences = corpus_sequences(&model);
    let batch = Batch::pack(&sequences, 2048).unwrap();
    let (mut acts, _) = engine.forward(&batch, &plan, false).unwrap();
    let rows = acts.take(hook()).unwrap();
    // Each sequence's largest activation per neuron, at its first position.
    let mut best = vec![(f32::NEG_INFINITY, 0usize); sequences.len() * WIDTH];
    for s in 0..sequences.len() {
        for (p, t) in batch.sequence(s).enumerate() {
            for n in 0..WIDTH {
                let v = rows[t * WIDTH + n];
                if p == 0 || v > best[s * WIDTH + n].0 {
                    best[s * WIDTH + n] = (v, p);
                }
            }
        }
    }
    let expected = brute_force_lists(sequences.len(), true, |s, n| best[s * WIDTH + n].0);

    let file = sweep_file(&sweeps.path("corpus/corpus_topk.safetensors"));
    let path = Path::new("corpus_topk.safetensors");
    assert_eq!(file.metadata["n_sequences"], sequences.len().to_string());
    assert_eq!(file.metadata["context"], CONTEXT.to_string());
    assert!(!file.metadata.contains_key("shard"));
    let values = file.f32s("values", &[WIDTH, K], path).unwrap();
    let seqs = file.i64s("sequence", &[WIDTH, K], path).unwrap();
    let positions = file.i64s("position", &[WIDTH, K], path).unwrap();
    let lines: Vec<Value> = fs::read_to_string(sweeps.path("corpus/contexts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), WIDTH * K);
    for n in 0..WIDTH {
        for (rank, &(v, s)) in expected[n].iter().enumerate() {
            let at = n * K + rank;
            let position = best[s * WIDTH + n].1;
            assert_eq!(
                (values[at].to_bits(), seqs[at], positions[at]),
                (v.to_bits(), s as i64, position as i64),
                "neuron {n} rank {rank}"
            );
            let line = &lines[at];
            assert_eq!((line["neuron"].as_u64(), line["rank"].as_u64()), (Some(n as u64), Some(rank as u64)));
            assert_eq!(line["value"].as_f64().unwrap() as f32, v);
            assert_eq!(line["position"].as_u64(), Some(position as u64));
            let ids: Vec<u32> = serde_json::from_value(line["token_ids"].clone()).unwrap();
            assert_eq!(ids, sequences[s], "neuron {n} rank {rank}: the whole sequence from its first token");
            let tokens: Vec<String> = serde_json::from_value(line["tokens"].clone()).unwrap();
            let texts: Vec<String> = ids.iter().map(|&id| model.tokenizer.token_text(id)).collect();
            assert_eq!(tokens, texts);
            let activations: Vec<f32> = serde_json::from_value(line["activations"].clone()).unwrap();
            let column: Vec<f32> = batch.sequence(s).map(|t| rows[t * WIDTH + n]).collect();
            assert_eq!(activations, column, "neuron {n} rank {rank}: the activation at every token");
        }
    }

    // The histogram of every token's activation in the fixed bins.
    let histogram = file.i64s("histogram", &[WIDTH, HIST_BINS], path).unwrap();
    let mut expected = vec![0i64; WIDTH * HIST_BINS];
    for s in 0..sequences.len() {
        for t in batch.sequence(s) {
            for n in 0..WIDTH {
                expected[n * HIST_BINS + hist_bin(rows[t * WIDTH + n])] += 1;
            }
        }
    }
    assert_eq!(histogram, &expected[..]);
    let n_tokens: i64 = file.metadata["n_tokens"].parse().unwrap();
    assert!(histogram.chunks(HIST_BINS).all(|h| h.iter().sum::<i64>() == n_tokens));

    // Per interval of the sequences' peaks: their count, and the two of smallest hash.
    let s_k = SAMPLES_PER_INTERVAL;
    let counts = file.i64s("sample_count", &[WIDTH, INTERVALS], path).unwrap();
    let shape = [WIDTH, INTERVALS, s_k];
    let (sample_seqs, sample_values, sample_positions) = (
        file.i64s("sample_sequence", &shape, path).unwrap(),
        file.f32s("sample_value", &shape, path).unwrap(),
        file.i64s("sample_position", &shape, path).unwrap(),
    );
    let sample_lines: Vec<Value> = fs::read_to_string(sweeps.path("corpus/samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut line_at = 0;
    for n in 0..WIDTH {
        for interval in 0..INTERVALS {
            let mut members: Vec<usize> = (0..sequences.len())
                .filter(|&s| interval_of_bin(hist_bin(best[s * WIDTH + n].0)) == interval)
                .collect();
            assert_eq!(
                counts[n * INTERVALS + interval],
                members.len() as i64,
                "neuron {n} interval {interval}"
            );
            members.sort_by_key(|&s| (sequence_hash(s as u64), s));
            for slot in 0..s_k {
                let at = (n * INTERVALS + interval) * s_k + slot;
                match members.get(slot) {
                    Some(&s) => {
                        let (v, p) = best[s * WIDTH + n];
                        assert_eq!(
                            (sample_seqs[at], sample_values[at].to_bits(), sample_positions[at]),
                            (s as i64, v.to_bits(), p as i64),
                            "neuron {n} interval {interval} slot {slot}"
                        );
                        let line = &sample_lines[line_at];
                        line_at += 1;
                        assert_eq!(
                            (line["neuron"].as_u64(), line["interval"].as_u64(), line["slot"].as_u64()),
                            (Some(n as u64), Some(interval as u64), Some(slot as u64))
                        );
                        assert_eq!(line["sequence"].as_u64(), Some(s as u64));
                        let activations: Vec<f32> =
                            serde_json::from_value(line["activations"].clone()).unwrap();
                        let column: Vec<f32> = batch.sequence(s).map(|t| rows[t * WIDTH + n]).collect();
                        assert_eq!(activations, column);
                        let ids: Vec<u32> = serde_json::from_value(line["token_ids"].clone()).unwrap();
                        assert_eq!(ids, sequences[s]);
                    }
                    None => assert_eq!(sample_seqs[at], -1),
                }
            }
        }
    }
    assert_eq!(line_at, sample_lines.len());
}

#[test]
fn merged_shards_are_byte_identical_to_one_run() {
    let sweeps = Sweeps::get();
    for name in ["corpus_topk.safetensors", "contexts.jsonl", "samples.jsonl"] {
        let one = fs::read(sweeps.path("corpus").join(name)).unwrap();
        let merged = fs::read(sweeps.path("merged").join(name)).unwrap();
        assert!(one == merged, "{name}: the merge of three shards differs from one run");
    }
    // Each shard holds only its own sequences.
    for i in 0..3 {
        let shard = sweep_file(&sweeps.path(&format!("shard{i}/corpus_topk.safetensors")));
        assert_eq!(shard.metadata["shard"], format!("{i}/3"));
        let seqs = shard.i64s("sequence", &[WIDTH, K], Path::new("shard")).unwrap();
        assert!(seqs.iter().all(|&s| s == -1 || s % 3 == i), "shard {i}: {seqs:?}");
    }
}

#[test]
fn logits_sweep_equals_a_brute_force_in_f64() {
    // The weights read straight from the file.
    let bytes = fs::read(tiny_model().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensor = |name: &str| -> Vec<f32> { bytemuck::pod_collect_to_vec(st.tensor(name).unwrap().data()) };
    let wte = tensor("transformer.wte.weight");
    let gamma = tensor("transformer.ln_f.weight");
    let c_proj = tensor("transformer.h.8.mlp.c_proj.weight");
    let h = gamma.len();
    let file = sweep_file(&Sweeps::get().path("logits/logits_topk.safetensors"));
    let path = Path::new("logits_topk.safetensors");
    assert_eq!(file.metadata["layer"], "8");
    assert!(file.metadata["method"].contains("ignored"), "{:?}", file.metadata["method"]);
    let lists: Vec<(bool, &[i32], &[f32])> =
        [(true, "top_ids", "top_values"), (false, "bottom_ids", "bottom_values")]
            .iter()
            .map(|&(top, ids, values)| {
                (
                    top,
                    file.i32s(ids, &[WIDTH, K], path).unwrap(),
                    file.f32s(values, &[WIDTH, K], path).unwrap(),
                )
            })
            .collect();
    // f32 rounding: each term of the direction γ_j·w_j once, the dot product over h terms, the
    // stored result: at most (h + 2) · 2⁻²⁴ · Σ|terms| in any summation order.
    let unit = f64::from(f32::EPSILON) / 2.0;
    for n in 0..WIDTH {
        let direction: Vec<f64> = (0..h).map(|j| gamma[j] as f64 * c_proj[j * WIDTH + n] as f64).collect();
        let exact: Vec<(f64, f64)> = (0..VOCAB)
            .map(|t| {
                let terms = wte[t * h..(t + 1) * h].iter().zip(&direction).map(|(&w, &d)| w as f64 * d);
                let (sum, abs) = terms.fold((0.0, 0.0), |(s, a), x| (s + x, a + x.abs()));
                (sum, (h as f64 + 2.0) * unit * abs)
            })
            .collect();
        let widest = exact.iter().map(|e| e.1).fold(0.0, f64::max);
        for &(top, ids, values) in &lists {
            let mut order: Vec<usize> = (0..VOCAB).collect();
            order.sort_by(|&a, &b| {
                let by_value =
                    if top { exact[b].0.total_cmp(&exact[a].0) } else { exact[a].0.total_cmp(&exact[b].0) };
                by_value.then(a.cmp(&b))
            });
            let kth = exact[order[K - 1]].0;
            for rank in 0..K {
                let id = ids[n * K + rank] as usize;
                let (value, bound) = exact[id];
                let got = values[n * K + rank] as f64;
                assert!(
                    (got - value).abs() <= bound,
                    "neuron {n} rank {rank}: token {id} {got} vs exact {value} (bound {bound:e})"
                );
                // The brute force's token at this rank, or one the rounding cannot tell from it: a
                // token ranked above another on the GPU is at most both bounds below it exactly.
                let want = exact[order[rank]].0;
                assert!(
                    (value - want).abs() <= bound + widest,
                    "neuron {n} rank {rank}: token {id} ({value}) where the brute force has {} ({want})",
                    order[rank]
                );
                let among = if top { value >= kth - bound - widest } else { value <= kth + bound + widest };
                assert!(among, "neuron {n}: token {id} is not among the {K} extremes");
            }
        }
    }
}

/// Welch's two-sided p from the definition (an implementation apart from the crate's).
fn welch_p(a: &[f64], b: &[f64]) -> f64 {
    let mean_var = |x: &[f64]| {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        (m, x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64)
    };
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let t = (ma - mb) / (sa + sb).sqrt();
    let df = (sa + sb).powi(2) / (sa * sa / (a.len() - 1) as f64 + sb * sb / (b.len() - 1) as f64);
    2.0 * StudentsT::new(0.0, 1.0, df).unwrap().cdf(-t.abs())
}

/// Neurons at BH q < 0.05 (step-up: the largest k with p_(k) · m / k < 0.05) and at
/// Bonferroni p · m < 0.05.
fn counts(p: &[f64]) -> (usize, usize) {
    let m = p.len() as f64;
    let mut sorted = p.to_vec();
    sorted.sort_by(f64::total_cmp);
    let bh = (1..=sorted.len()).filter(|&k| sorted[k - 1] * m / (k as f64) < 0.05).max().unwrap_or(0);
    (bh, p.iter().filter(|&&x| x * m < 0.05).count())
}

fn counts_for(columns: &[Vec<f64>], first: &[usize], second: &[usize]) -> (usize, usize) {
    let p: Vec<f64> = columns
        .iter()
        .map(|c| {
            let a: Vec<f64> = first.iter().map(|&w| c[w]).collect();
            let b: Vec<f64> = second.iter().map(|&w| c[w]).collect();
            welch_p(&a, &b)
        })
        .collect();
    counts(&p)
}

fn read_npy(path: &Path) -> Vec<f32> {
    let bytes = fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytemuck::pod_collect_to_vec(&bytes[10 + header_len..])
}

#[test]
fn challenge_checks_agree_with_an_independent_computation_and_the_report_shows_the_sweeps() {
    let sweeps = Sweeps::get();
    let cwd = sweeps.dir.path();
    let model = tiny_model();
    let run = neoprobe(
        cwd,
        &[
            "challenge",
            "--model-dir",
            model.to_str().unwrap(),
            "--out-dir",
            "challenge",
            "--json",
            "--permutations",
            "300",
            "--seed",
            "11",
            "--sweep",
            "vocab",
            "--sweep",
            "corpus",
            "--sweep",
            "logits",
        ],
    );
    run.assert_success("challenge --json --sweep");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let out = cwd.join("challenge");
    let values = read_npy(&out.join("activations.npy"));
    // Neuron j's value for word w: verbs are words 0..100, nouns 100..200.
    let columns: Vec<Vec<f64>> =
        (0..WIDTH).map(|j| (0..200).map(|w| values[w * WIDTH + j] as f64).collect()).collect();
    let verbs: Vec<usize> = (0..100).collect();
    let nouns: Vec<usize> = (100..200).collect();
    let (bh, bonferroni) = counts_for(&columns, &verbs, &nouns);
    assert_eq!(json["bh_count"].as_u64(), Some(bh as u64), "{json}");
    assert_eq!(json["bonferroni_count"].as_u64(), Some(bonferroni as u64));
    assert_eq!(json["shape"], serde_json::json!([2, 100, WIDTH]));
    // The run itself: model, hook, adapter and variant, timings.
    assert_eq!(json["model"], model.to_str().unwrap());
    assert_eq!(json["hook"], "blocks.8.mlp.hook_pre");
    assert!(json["adapter"].is_string() && json["variant"].is_string() && json["commit"].is_null(), "{json}");
    assert!(json["seconds"]["total"].as_f64().unwrap() >= json["seconds"]["forward"].as_f64().unwrap());

    // The shuffles as documented: identity orders shuffled in turn by one seeded generator.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let null: Vec<(usize, usize)> = (0..300)
        .map(|_| {
            let mut order: Vec<usize> = (0..200).collect();
            order.shuffle(&mut rng);
            counts_for(&columns, &order[..100], &order[100..])
        })
        .collect();
    let p95 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let pos = 0.95 * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    let perm = &json["permutation"];
    assert_eq!(perm["n"].as_u64(), Some(300));
    for (name, observed, pick) in [
        ("bh", bh, (|c: &(usize, usize)| c.0) as fn(&(usize, usize)) -> usize),
        ("bonferroni", bonferroni, |c: &(usize, usize)| c.1),
    ] {
        let counts: Vec<f64> = null.iter().map(|c| pick(c) as f64).collect();
        let mean = counts.iter().sum::<f64>() / 300.0;
        let p_value = (1 + counts.iter().filter(|&&c| c >= observed as f64).count()) as f64 / 301.0;
        let close = |key: &str, want: f64| {
            let got = perm[key].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-12, "{key}: {got} vs recomputed {want}");
        };
        close(&format!("{name}_null_mean"), mean);
        close(&format!("{name}_null_p95"), p95(counts.clone()));
        close(&format!("{name}_p_value"), p_value);
    }

    // The single-token control, from the token ids the run recorded.
    let bytes = fs::read(out.join("activations.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let token_ids: Vec<Vec<u32>> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["token_ids"]).unwrap();
    let single = |range: std::ops::Range<usize>| -> Vec<usize> {
        range.filter(|&w| token_ids[w].len() == 1).collect()
    };
    let (sv, sn) = (single(0..100), single(100..200));
    let control = &json["single_token_control"];
    assert_eq!(control["words"], serde_json::json!([sv.len(), sn.len()]));
    let (cbh, cbonf) = counts_for(&columns, &sv, &sn);
    assert_eq!(
        (control["bh_count"].as_u64(), control["bonferroni_count"].as_u64()),
        (Some(cbh as u64), Some(cbonf as u64))
    );

    // report.md: the checks, and for each top neuron what the three sweeps say about it.
    let report = fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("**Against chance.** The verbs/nouns labels shuffled 300 times (seed 11)"),
        "{report}"
    );
    assert!(report.contains(&format!("| BH q < 0.05 | {bh} | ")), "{report}");
    assert!(report.contains("**Word length.**"), "{report}");
    assert!(report.contains("## 5. What the top neurons respond to beyond the word lists"), "{report}");
    let vocab = sweep_file(&sweeps.path("vocab/vocab_topk.safetensors"));
    let vocab_top = vocab.i32s("top_ids", &[WIDTH, K], Path::new("vocab")).unwrap();
    let tokenizer = neoprobe::tokenize::Tokenizer::load(&model.join("tokenizer.json")).unwrap();
    let neurons: Vec<u64> = ["verbs", "nouns"]
        .iter()
        .flat_map(|k| {
            json["top_neurons"][k].as_array().unwrap().iter().map(|n| n["neuron"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(neurons.len(), 10);
    for n in neurons {
        let at = report
            .find(&format!("### Neuron {n} (prefers "))
            .unwrap_or_else(|| panic!("no section for neuron {n}"));
        let section = &report[at..];
        let section = &section[..section[4..].find("### ").map_or(section.len(), |e| e + 4)];
        let first = tokenizer.token_text(vocab_top[n as usize * K] as u32);
        let shown = neoprobe::sweep::token_cell(&first);
        for needle in [
            "- **tokens alone:** ",
            "- **contexts:**",
            "- **promotes:** ",
            "- **suppresses:** ",
            shown.as_str(),
        ] {
            assert!(section.contains(needle), "neuron {n}: {needle:?} missing in {section}");
        }
    }
    // Every file of the challenge, the causal test's figure included.
    let files: Vec<String> = serde_json::from_value(json["files"].clone()).unwrap();
    assert_eq!(files.len(), 8, "the challenge's files, causal.png included");
}

#[test]
fn help_snapshots() {
    let cwd = workdir();
    for (name, args) in [
        ("sweep_help", vec!["sweep", "--help"]),
        ("sweep_vocab_help", vec!["sweep", "vocab", "--help"]),
        ("sweep_corpus_help", vec!["sweep", "corpus", "--help"]),
        ("sweep_merge_help", vec!["sweep", "merge", "--help"]),
        ("sweep_logits_help", vec!["sweep", "logits", "--help"]),
    ] {
        let run = neoprobe(cwd.path(), &args);
        run.assert_success(name);
        insta::assert_snapshot!(name, run.stdout);
    }
}

/// A shard's output with one metadata entry changed (as another sweep would have written it).
fn shard_with(from: &Path, to: &Path, key: &str, value: &str) {
    copy_dir(from, to);
    let path = to.join("corpus_topk.safetensors");
    let mut file = sweep_file(&path);
    file.metadata.insert(key.to_string(), value.to_string());
    file.write(&path).unwrap();
}

#[test]
fn bad_inputs_fail_with_one_line_and_leave_nothing_behind() {
    let sweeps = Sweeps::get();
    let model = tiny_model().display().to_string();
    let m = model.as_str();
    let text: &[u8] = b"The dog will run before the cat comes back. Every city wanted to grow.";
    type Setup = Box<dyn Fn(&Path)>;
    let files = |list: Vec<(&'static str, &'static [u8])>| -> Setup {
        Box::new(move |dir: &Path| {
            for (name, bytes) in &list {
                let path = dir.join(name);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, bytes).unwrap();
            }
        })
    };
    let shards = |edit: Option<(&'static str, &'static str, &'static str)>| -> Setup {
        let root = sweeps.dir.path().to_path_buf();
        Box::new(move |dir: &Path| {
            for i in 0..3 {
                copy_dir(&root.join(format!("shard{i}")), &dir.join(format!("s{i}")));
            }
            if let Some((shard, key, value)) = edit {
                fs::remove_dir_all(dir.join(shard)).unwrap();
                shard_with(&root.join(format!("shard{}", &shard[1..])), &dir.join(shard), key, value);
            }
        })
    };
    let cases: Vec<(&str, Setup, Vec<&str>, &str)> = vec![
        (
            "empty text",
            files(vec![("e.txt", b"")]),
            vec!["sweep", "corpus", "--model-dir", m, "--text", "e.txt", "--out-dir", "o"],
            "text file e.txt is empty",
        ),
        (
            "non-UTF-8 text",
            files(vec![("l.txt", b"caf\xe9 au lait\n")]),
            vec!["sweep", "corpus", "--model-dir", m, "--text", "l.txt", "--out-dir", "o"],
            "l.txt is not UTF-8",
        ),
        (
            "missing text",
            files(vec![]),
            vec!["sweep", "corpus", "--model-dir", m, "--text", "nope.txt", "--out-dir", "o"],
            "cannot read text nope.txt",
        ),
        (
            "--context 0",
            files(vec![("t.txt", text)]),
            vec!["sweep", "corpus", "--model-dir", m, "--text", "t.txt", "--context", "0", "--out-dir", "o"],
            "--context must be at least 1",
        ),
        (
            "--context above the positions",
            files(vec![("t.txt", text)]),
            vec![
                "sweep",
                "corpus",
                "--model-dir",
                m,
                "--text",
                "t.txt",
                "--context",
                "2049",
                "--out-dir",
                "o",
            ],
            "--context 2049 is above the model's 2048 positions",
        ),
        (
            "--shard malformed",
            files(vec![("t.txt", text)]),
            vec!["sweep", "corpus", "--model-dir", m, "--text", "t.txt", "--shard", "1-4", "--out-dir", "o"],
            "--shard \"1-4\" is not I/N",
        ),
        (
            "--shard I ≥ N",
            files(vec![("t.txt", text)]),
            vec!["sweep", "corpus", "--model-dir", m, "--text", "t.txt", "--shard", "4/4", "--out-dir", "o"],
            "the index must be below the number of shards",
        ),
        (
            "batch budget below one sequence",
            files(vec![("t.txt", text)]),
            vec![
                "sweep",
                "corpus",
                "--model-dir",
                m,
                "--text",
                "t.txt",
                "--context",
                "8",
                "--top-k",
                "1",
                "--batch-tokens",
                "5",
                "--out-dir",
                "o",
            ],
            "a batch of 5 tokens (--batch-tokens) cannot hold one sequence of 8 tokens",
        ),
        (
            "--top-k above the corpus",
            files(vec![("t.txt", text)]),
            vec![
                "sweep",
                "corpus",
                "--model-dir",
                m,
                "--text",
                "t.txt",
                "--context",
                "8",
                "--top-k",
                "100",
                "--out-dir",
                "o",
            ],
            "--top-k 100 is above the 2 sequences",
        ),
        (
            "corpus --top-k 0",
            files(vec![("t.txt", text)]),
            vec!["sweep", "corpus", "--model-dir", m, "--text", "t.txt", "--top-k", "0", "--out-dir", "o"],
            "--top-k must be at least 1",
        ),
        (
            "vocab --top-k 0",
            files(vec![]),
            vec!["sweep", "vocab", "--model-dir", m, "--top-k", "0", "--out-dir", "o"],
            "--top-k must be at least 1",
        ),
        (
            "vocab --top-k above the vocabulary",
            files(vec![]),
            vec!["sweep", "vocab", "--model-dir", m, "--top-k", "50258", "--out-dir", "o"],
            "--top-k 50258 is above the model's vocabulary of 50257 tokens",
        ),
        (
            "vocab --batch-tokens 0",
            files(vec![]),
            vec!["sweep", "vocab", "--model-dir", m, "--batch-tokens", "0", "--out-dir", "o"],
            "--batch-tokens must be at least 1",
        ),
        (
            "vocab unknown hook",
            files(vec![]),
            vec!["sweep", "vocab", "--model-dir", m, "--hook", "blocks.8.mlp.nope", "--out-dir", "o"],
            "unknown hook",
        ),
        (
            "vocab missing model",
            files(vec![]),
            vec!["sweep", "vocab", "--model-dir", "no-model", "--out-dir", "o"],
            "model folder no-model does not exist",
        ),
        (
            "logits --layer out of range",
            files(vec![]),
            vec!["sweep", "logits", "--model-dir", m, "--layer", "12", "--out-dir", "o"],
            "--layer 12 is out of range",
        ),
        (
            "logits --top-k above the vocabulary",
            files(vec![]),
            vec!["sweep", "logits", "--model-dir", m, "--top-k", "60000", "--out-dir", "o"],
            "--top-k 60000 is above",
        ),
        (
            "out dir holds files",
            files(vec![("o/x.txt", b"mine")]),
            vec!["sweep", "vocab", "--model-dir", m, "--out-dir", "o"],
            "output folder o already holds 1 entry; pass --force",
        ),
        (
            "merge: shards of different models",
            shards(Some(("s1", "model_sha256", "0000"))),
            vec!["sweep", "merge", "--out-dir", "o", "s0", "s1", "s2"],
            "were run on different models",
        ),
        (
            "merge: shards of different hooks",
            shards(Some(("s2", "hook", "blocks.7.mlp.hook_pre"))),
            vec!["sweep", "merge", "--out-dir", "o", "s0", "s1", "s2"],
            "differ in hook (\"blocks.8.mlp.hook_pre\" against \"blocks.7.mlp.hook_pre\")",
        ),
        (
            "merge: shards of different k",
            shards(Some(("s1", "top_k", "10"))),
            vec!["sweep", "merge", "--out-dir", "o", "s0", "s1", "s2"],
            "differ in top_k",
        ),
        (
            "merge: a shard missing",
            shards(None),
            vec!["sweep", "merge", "--out-dir", "o", "s0", "s2"],
            "shard 1/3 is missing",
        ),
        (
            "merge: a shard twice",
            shards(None),
            vec!["sweep", "merge", "--out-dir", "o", "s0", "s1", "s1", "s2"],
            "are both shard 1/3",
        ),
        (
            "merge: not a sweep folder",
            files(vec![("x/a.txt", b"a")]),
            vec!["sweep", "merge", "--out-dir", "o", "x"],
            "x has no corpus_topk.safetensors",
        ),
        (
            "extract: a word longer than a batch",
            files(vec![("w.txt", b"dog\nunbelievably\n")]),
            vec!["extract", "--model-dir", m, "--words", "w.txt", "--batch-tokens", "2", "--out", "o.npy"],
            "word \"unbelievably\" (line 2 of w.txt) has 4 tokens, more than a batch holds (2 tokens)",
        ),
        (
            "challenge: --sweep without sweep files",
            files(vec![("x/a.txt", b"a")]),
            vec!["challenge", "--model-dir", m, "--sweep", "x", "--out-dir", "o"],
            "--sweep x holds none of",
        ),
        (
            "challenge: --batch-tokens 0",
            files(vec![]),
            vec!["challenge", "--model-dir", m, "--batch-tokens", "0", "--out-dir", "o"],
            "--batch-tokens must be at least 1",
        ),
    ];
    for (name, setup, args, expect) in cases {
        let cwd = workdir();
        setup(cwd.path());
        let before = entries(cwd.path());
        let run = neoprobe(cwd.path(), &args);
        let line = run.assert_one_line_error(name);
        assert!(line.contains(expect), "{name}: {line:?} lacks {expect:?}");
        println!("{name}: {line}");
        assert_eq!(entries(cwd.path()), before, "{name}: files appeared or vanished");
    }
}

#[test]
fn a_challenge_sweep_of_another_block_is_refused() {
    let sweeps = Sweeps::get();
    let cwd = workdir();
    shard_with(&sweeps.path("corpus"), &cwd.path().join("c7"), "hook", "blocks.7.mlp.hook_pre");
    let model = tiny_model();
    let run = neoprobe(
        cwd.path(),
        &["challenge", "--model-dir", model.to_str().unwrap(), "--sweep", "c7", "--out-dir", "o"],
    );
    let line = run.assert_one_line_error("corpus sweep of block 7");
    assert!(
        line.contains(
            "is of hook blocks.7.mlp.hook_pre but the challenge's neurons are blocks.8.mlp.hook_pre's"
        ),
        "{line}"
    );
    assert_eq!(entries(cwd.path()), vec!["c7"]);
}
