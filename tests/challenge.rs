//! `neoprobe challenge` end to end: the built binary run in temporary folders on the tiny HF-made
//! fixture model (hidden 64, MLP width 256, 12 blocks), from a local folder and from a local fake
//! hub, checked against HF's own activations, an independent Welch t-test, snapshots, and every
//! kind of bad input. Runs need a GPU adapter (lavapipe will do): without one they fail.

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{FakeFile, FakeHub, FakeRepo, COMMIT};

/// Max abs difference from HF allowed for `mlp.hook_pre` (the fidelity tests' tolerance: an
/// erf-GELU mix-up moves block 8 by 1.9e-4 on this model, 1/√d scaling by 0.15).
const TOLERANCE: f64 = 2e-6;
const OUTPUT_FILES: [&str; 8] = [
    "activations.npy",
    "activations.safetensors",
    "neurons.csv",
    "heatmap.png",
    "top_neurons.png",
    "offsets.png",
    "causal.png",
    "report.md",
];
/// The tiny fixture model's MLP width (4 × hidden 64) and number of blocks.
const TINY_WIDTH: usize = 256;
const TINY_LAYERS: usize = 12;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_model() -> PathBuf {
    repo_root().join("fixtures/tiny-neo")
}

/// A fresh folder under the target's temporary folder (runs happen in it, as their cwd).
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// The binary under test: Cargo's, unless `NEOPROBE_TEST_BIN` names another (several checkouts
/// sharing one target folder overwrite each other's `target/release/neoprobe`; their
/// `target/release/deps/neoprobe-<hash>` stay apart).
fn binary() -> PathBuf {
    std::env::var_os("NEOPROBE_TEST_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_neoprobe")), PathBuf::from)
}

struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn assert_success(&self, what: &str) {
        assert!(self.success, "{what} failed ({:?}):\n{}\n{}", self.code, self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "{what}: {}", self.stderr);
    }

    /// Non-zero exit and exactly one stderr line, `error: …`, without panic; returns that line.
    fn assert_one_line_error(&self, what: &str) -> &str {
        assert!(!self.success, "{what}: expected a failure, got success:\n{}", self.stdout);
        assert_eq!(self.code, Some(1), "{what}: exit code; stderr:\n{}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: stderr is not one line:\n{}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{what}: {}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "{what}: {}", self.stderr);
        assert!(self.stdout.is_empty(), "{what}: stdout: {}", self.stdout);
        lines[0]
    }
}

/// Runs `neoprobe ARGS` in `cwd` with no HF_* variable but those of `env`.
fn neoprobe(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(binary());
    command.args(args).current_dir(cwd);
    for key in ["HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_TOKEN_PATH"] {
        command.env_remove(key);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = command.output().expect("the neoprobe binary runs");
    Run {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// The names in a folder, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn assert_all_outputs(out: &Path) {
    for name in OUTPUT_FILES {
        let path = out.join(name);
        assert!(
            path.is_file() && fs::metadata(&path).unwrap().len() > 0,
            "{} missing or empty",
            path.display()
        );
    }
}

/// A minimal `.npy` reader: format 1.0, little-endian float32, C order.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "npy magic and version 1.0");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert_eq!((10 + header_len) % 64, 0, "npy header alignment");
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let data: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "npy data length for shape {shape:?}");
    (shape, data)
}

/// The `activations` tensor of a safetensors file (shape, values) and its metadata.
fn read_safetensors(path: &Path) -> (Vec<usize>, Vec<f32>, HashMap<String, String>) {
    let bytes = fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(tensors.names(), vec!["activations"]);
    let view = tensors.tensor("activations").unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    let data = bytemuck::pod_collect_to_vec(view.data());
    (view.shape().to_vec(), data, meta.metadata().clone().unwrap_or_default())
}

/// HF's per-token `mlp.hook_pre` of the 200 fixture words (data/verbs.txt then data/nouns.txt),
/// with each word's token ids.
struct HfWords {
    words: Vec<String>,
    ids: Vec<Vec<u32>>,
    ids_prefix_space: Vec<Vec<u32>>,
    /// Per layer (7 and 8): `[279, 256]` token rows.
    rows: HashMap<usize, Vec<f32>>,
}

impl HfWords {
    fn get() -> &'static HfWords {
        static HF: OnceLock<HfWords> = OnceLock::new();
        HF.get_or_init(|| {
            let tokens: Value =
                serde_json::from_slice(&fs::read(repo_root().join("fixtures/hf_tokens.json")).unwrap())
                    .unwrap();
            let list = tokens["words"].as_array().unwrap();
            let ids_of = |key: &str| -> Vec<Vec<u32>> {
                list.iter().map(|w| serde_json::from_value(w[key].clone()).unwrap()).collect()
            };
            let bytes = fs::read(repo_root().join("fixtures/hf_activations.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let rows = [7, 8]
                .into_iter()
                .map(|l| {
                    let view = st.tensor(&format!("words.blocks.{l}.mlp.hook_pre")).unwrap();
                    assert_eq!(view.shape()[1], TINY_WIDTH);
                    (l, bytemuck::pod_collect_to_vec(view.data()))
                })
                .collect();
            HfWords {
                words: list.iter().map(|w| w["word"].as_str().unwrap().to_string()).collect(),
                ids: ids_of("ids"),
                ids_prefix_space: ids_of("ids_prefix_space"),
                rows,
            }
        })
    }

    /// HF's token rows of `word` at block `layer`.
    fn token_rows(&self, word: &str, layer: usize) -> Vec<&[f32]> {
        let i = self.words.iter().position(|w| w == word).unwrap_or_else(|| panic!("{word} not in fixtures"));
        let start: usize = self.ids[..i].iter().map(Vec::len).sum();
        let rows = &self.rows[&layer];
        (start..start + self.ids[i].len()).map(|t| &rows[t * TINY_WIDTH..(t + 1) * TINY_WIDTH]).collect()
    }

    /// The mean of `word`'s token rows (f64 accumulation).
    fn mean(&self, word: &str, layer: usize) -> Vec<f64> {
        let rows = self.token_rows(word, layer);
        (0..TINY_WIDTH).map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / rows.len() as f64).collect()
    }
}

fn max_abs_diff(got: &[f32], expected: &[f64]) -> f64 {
    assert_eq!(got.len(), expected.len());
    got.iter().zip(expected).map(|(g, e)| (*g as f64 - e).abs()).fold(0.0, f64::max)
}

fn lines_of(path: &str) -> Vec<String> {
    fs::read_to_string(repo_root().join(path)).unwrap().lines().map(str::trim).map(String::from).collect()
}

/// The default run on the tiny model, made once and shared: cwd is a fresh folder outside the
/// repository (so the built-in word lists are what makes it work), output into `out`.
struct DefaultRun {
    cwd: tempfile::TempDir,
    run: Run,
}

impl DefaultRun {
    fn get() -> &'static DefaultRun {
        static RUN: OnceLock<DefaultRun> = OnceLock::new();
        RUN.get_or_init(|| {
            // Kept for the whole test binary, so never removed: named to be recognisable in
            // the target's tmp folder (which `cargo clean` empties).
            let cwd = tempfile::Builder::new()
                .prefix("challenge-default-run-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap();
            let model = tiny_model();
            // Two random sets of the causal test: the CPU driver's default, given so that a GPU
            // (whose default is larger) prints the same summary.
            let args = ["challenge", "--model-dir", model.to_str().unwrap(), "--causal-sets", "2"];
            let run = neoprobe(cwd.path(), &args, &[]);
            run.assert_success("default challenge run");
            DefaultRun { cwd, run }
        })
    }

    fn out(&self) -> PathBuf {
        self.cwd.path().join("challenge-out")
    }
}

#[test]
fn default_run_writes_every_file_and_matches_hf() {
    let default = DefaultRun::get();
    // Only the output folder appears: no staging folder or temporary file is left behind.
    assert_eq!(entries(default.cwd.path()), vec!["challenge-out"]);
    let out = default.out();
    assert_eq!(entries(&out), {
        let mut names: Vec<String> = OUTPUT_FILES.iter().map(|s| s.to_string()).collect();
        names.sort();
        names
    });
    assert_all_outputs(&out);
    assert!(default.run.stderr.contains("wrote 8 files into challenge-out"), "{}", default.run.stderr);

    let (shape, values) = read_npy(&out.join("activations.npy"));
    assert_eq!(shape, vec![2, 100, TINY_WIDTH]);
    let hf = HfWords::get();
    let verbs = lines_of("data/verbs.txt");
    let nouns = lines_of("data/nouns.txt");
    let mut worst = (0.0f64, String::new());
    for (row, word) in verbs.iter().chain(&nouns).enumerate() {
        let got = &values[row * TINY_WIDTH..(row + 1) * TINY_WIDTH];
        let err = max_abs_diff(got, &hf.mean(word, 8));
        if err > worst.0 {
            worst = (err, word.clone());
        }
    }
    println!("max abs error against HF (mean over tokens): {:.2e} ({})", worst.0, worst.1);
    assert!(worst.0 <= TOLERANCE, "activations differ from HF by {:e} at {:?}", worst.0, worst.1);

    // The safetensors file holds the same array and says what it is.
    let (st_shape, st_values, meta) = read_safetensors(&out.join("activations.safetensors"));
    assert_eq!(st_shape, shape);
    assert_eq!(st_values, values);
    let categories: Value = serde_json::from_str(&meta["categories"]).unwrap();
    assert_eq!(categories[0]["name"], "verbs");
    assert_eq!(categories[0]["source"], "data/verbs.txt (built in)");
    assert_eq!(categories[1]["name"], "nouns");
    assert_eq!(categories[1]["source"], "data/nouns.txt (built in)");
    assert_eq!(serde_json::from_value::<Vec<String>>(categories[0]["words"].clone()).unwrap(), verbs);
    assert_eq!(serde_json::from_value::<Vec<String>>(categories[1]["words"].clone()).unwrap(), nouns);
    let token_ids: Vec<Vec<u32>> = serde_json::from_str(&meta["token_ids"]).unwrap();
    assert_eq!(token_ids, hf.ids);
    assert_eq!(meta["category_sizes"], "[100,100]");
    assert_eq!(meta["category_offsets"], "[0,100]");
    assert_eq!(meta["layout"], "[category, word, neuron]");
    assert_eq!(meta["hook"], "blocks.8.mlp.hook_pre");
    assert_eq!(meta["pooling"], "mean");
    assert_eq!(meta["prefix_space"], "false");
    assert_eq!(meta["model_dir"], tiny_model().display().to_string());
    assert!(["simple", "cpu", "tiled"].contains(&meta["kernel_variant"].as_str()), "{meta:?}");
    assert!(!meta["adapter"].is_empty());
    assert_eq!(meta["neoprobe_version"], env!("CARGO_PKG_VERSION"));

    let report = fs::read_to_string(out.join("report.md")).unwrap();
    for link in ["](neurons.csv)", "](heatmap.png)", "](top_neurons.png)", "](offsets.png)"] {
        assert!(report.contains(link), "report.md lacks {link}");
    }
    assert!(report.contains("| pipelines |"), "report.md lacks the pipelines time");
}

/// Welch's t and its two-sided p, from the definition.
fn welch(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mean_var = |x: &[f64]| {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        (m, x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64)
    };
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let t = (ma - mb) / (sa + sb).sqrt();
    let df = (sa + sb).powi(2) / (sa * sa / (a.len() - 1) as f64 + sb * sb / (b.len() - 1) as f64);
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let p = 2.0 * StudentsT::new(0.0, 1.0, df).unwrap().cdf(-t.abs());
    (t, p)
}

#[test]
fn neurons_csv_agrees_with_an_independent_welch_test() {
    let out = DefaultRun::get().out();
    let (_, values) = read_npy(&out.join("activations.npy"));
    let csv = fs::read_to_string(out.join("neurons.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header,
        [
            "neuron",
            "mean_verbs",
            "std_verbs",
            "mean_nouns",
            "std_nouns",
            "t",
            "p",
            "cohen_d",
            "p_bonferroni",
            "q_bh"
        ]
    );
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), TINY_WIDTH, "one row per neuron");
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    // The neuron with the largest |t| and a few fixed ones.
    let strongest =
        rows.iter().max_by(|a, b| a[column("t")].abs().total_cmp(&b[column("t")].abs())).unwrap()[0];
    for neuron in [0, 1, 100, TINY_WIDTH - 1, strongest as usize] {
        let row = &rows[neuron];
        assert_eq!(row[0], neuron as f64);
        let of = |c: usize| -> Vec<f64> {
            (0..100).map(|i| values[(c * 100 + i) * TINY_WIDTH + neuron] as f64).collect()
        };
        let (verbs, nouns) = (of(0), of(1));
        let (t, p) = welch(&verbs, &nouns);
        let close = |got: f64, want: f64, what: &str| {
            assert!(
                (got - want).abs() <= 1e-9 * want.abs() + 1e-13,
                "neuron {neuron} {what}: csv {got:e}, recomputed {want:e}"
            );
        };
        close(row[column("t")], t, "t");
        close(row[column("p")], p, "p");
        close(row[column("mean_verbs")], verbs.iter().sum::<f64>() / 100.0, "mean_verbs");
        close(row[column("mean_nouns")], nouns.iter().sum::<f64>() / 100.0, "mean_nouns");
        close(row[column("p_bonferroni")], (p * TINY_WIDTH as f64).min(1.0), "p_bonferroni");
    }
}

/// The default run's terminal summary, without its machine lines (adapter, timings) and with
/// the repository's path (where the model folder lies) replaced.
#[test]
fn terminal_summary_snapshot() {
    let run = &DefaultRun::get().run;
    let machine = run.stdout.lines().filter(|l| l.starts_with("time")).count();
    assert_eq!(machine, 2, "the adapter and timing lines:\n{}", run.stdout);
    let root = regex_escape(&repo_root().display().to_string());
    insta::with_settings!({ filters => vec![
        (r"(?m)^time .*\n", ""),
        (root.as_str(), "[REPO]"),
    ]}, {
        insta::assert_snapshot!(run.stdout);
    });
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn help_snapshots() {
    let cwd = workdir();
    for (name, args) in [
        ("help", vec!["--help"]),
        ("challenge_help", vec!["challenge", "--help"]),
        ("extract_help", vec!["extract", "--help"]),
    ] {
        let run = neoprobe(cwd.path(), &args, &[]);
        run.assert_success(name);
        insta::assert_snapshot!(name, run.stdout);
    }
}

/// The tiny fixture model's three files, as a hub repo at [`COMMIT`].
fn tiny_repo(id: &str) -> FakeRepo {
    let file = |name: &str, lfs: bool| FakeFile {
        name: name.to_string(),
        bytes: fs::read(tiny_model().join(name)).unwrap(),
        lfs,
    };
    FakeRepo::new(
        id,
        vec![file("config.json", false), file("model.safetensors", true), file("tokenizer.json", true)],
    )
}

#[test]
fn download_path_through_a_fake_hub() {
    let hub = FakeHub::start(vec![tiny_repo("test-org/tiny-neo")]);
    let home = workdir();
    let cwd = workdir();
    let env = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", home.path().to_str().unwrap())];
    let args = |out: &'static str| {
        vec!["challenge", "--model", "test-org/tiny-neo", "--revision", COMMIT, "--out-dir", out]
    };

    // First run: downloads into HF_HOME's cache, then runs.
    let first = neoprobe(cwd.path(), &args("first"), &env);
    first.assert_success("download run");
    assert!(hub.connections() > 0);
    assert_all_outputs(&cwd.path().join("first"));
    let snapshot = home.path().join("hub/models--test-org--tiny-neo/snapshots").join(COMMIT);
    assert!(snapshot.join("model.safetensors").is_file(), "the model is in the HF cache");
    assert!(
        first.stdout.contains(&format!("model     test-org/tiny-neo (revision {COMMIT})")),
        "{}",
        first.stdout
    );
    let (_, values, meta) = read_safetensors(&cwd.path().join("first/activations.safetensors"));
    assert_eq!(meta["model"], "test-org/tiny-neo");
    assert_eq!(meta["revision"], COMMIT);
    assert_eq!(meta["commit"], COMMIT);

    // Second run: from the cache, without a single request; same numbers.
    hub.reset_counts();
    let second = neoprobe(cwd.path(), &[&args("second")[..], &["--json"]].concat(), &env);
    second.assert_success("cached run");
    assert_eq!(hub.connections(), 0, "the cached run made requests: {:?}", hub.seen());
    let (_, again, _) = read_safetensors(&cwd.path().join("second/activations.safetensors"));
    assert_eq!(again, values);
    // The summary names the hub model, and stderr says where its files are.
    let json: Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(json["model"], "test-org/tiny-neo");
    assert_eq!(json["revision"], COMMIT);
    assert_eq!(json["commit"], COMMIT);
    let closing = [
        format!("neoprobe: model files from {} (commit {COMMIT}; ", snapshot.display()),
        "neoprobe: wrote 8 files into second".to_string(),
    ];
    for line in closing {
        assert!(second.stderr.lines().any(|l| l.starts_with(&line)), "no {line:?} in:\n{}", second.stderr);
    }

    // Offline with an empty cache and the default model: fails fast, pointing at --model-dir.
    let empty = workdir();
    let offline = neoprobe(
        cwd.path(),
        &["challenge", "--out-dir", "offline"],
        &[("HF_HUB_OFFLINE", "1"), ("HF_HOME", empty.path().to_str().unwrap())],
    );
    let line = offline.assert_one_line_error("offline, not cached");
    assert!(line.contains("--model-dir"), "{line}");
    assert!(offline.elapsed < Duration::from_secs(1), "offline failure took {:?}", offline.elapsed);
    assert!(!cwd.path().join("offline").exists());
    assert_eq!(entries(empty.path()), Vec::<String>::new(), "offline mode wrote into HF_HOME");

    // A repo id the hub does not know: the hub module's not-found message.
    hub.reset_counts();
    let missing = neoprobe(
        cwd.path(),
        &["challenge", "--model", "test-org/no-such-model", "--revision", COMMIT, "--out-dir", "missing"],
        &env,
    );
    let line = missing.assert_one_line_error("unknown repo");
    assert!(line.contains("\"test-org/no-such-model\" was not found on the hub"), "{line}");
    assert!(!cwd.path().join("missing").exists());
    assert_eq!(entries(cwd.path()), vec!["first", "second"]);
}

/// Words of the fixture lists used for small custom categories.
const SMALL_CATEGORIES: [(&str, &[&str]); 3] = [
    ("motion", &["sit", "grow", "enter"]),
    ("speech", &["speak", "argue"]),
    ("places", &["city", "street", "hospital", "river"]),
];

#[test]
fn custom_categories_of_unequal_sizes_at_another_layer_and_pooling() {
    let cwd = workdir();
    let mut args: Vec<String> =
        vec!["challenge".into(), "--model-dir".into(), tiny_model().display().to_string()];
    for (name, words) in SMALL_CATEGORIES {
        fs::write(cwd.path().join(format!("{name}.txt")), words.join("\n")).unwrap();
        args.extend(["--category".into(), format!("{name}={name}.txt")]);
    }
    args.extend(["--layer", "7", "--pool", "last", "--out-dir", "out"].map(String::from));
    let run = neoprobe(cwd.path(), &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    run.assert_success("custom categories");
    let out = cwd.path().join("out");
    assert_all_outputs(&out);
    assert!(run.stdout.contains("grammar tuning: motion vs speech"), "{}", run.stdout);
    assert!(run.stdout.contains("words     motion 3, speech 2, places 4"), "{}", run.stdout);

    // Unequal sizes: [total words, width], rows in category order; each row is HF's last token.
    let (shape, values) = read_npy(&out.join("activations.npy"));
    assert_eq!(shape, vec![9, TINY_WIDTH]);
    let hf = HfWords::get();
    let words: Vec<&str> = SMALL_CATEGORIES.iter().flat_map(|(_, w)| w.iter().copied()).collect();
    for (row, word) in words.iter().enumerate() {
        let last: Vec<f64> = hf.token_rows(word, 7).last().unwrap().iter().map(|&v| v as f64).collect();
        let err = max_abs_diff(&values[row * TINY_WIDTH..(row + 1) * TINY_WIDTH], &last);
        assert!(err <= TOLERANCE, "{word}: {err:e} from HF's last token at block 7");
    }
    let (st_shape, _, meta) = read_safetensors(&out.join("activations.safetensors"));
    assert_eq!(st_shape, shape);
    assert_eq!(meta["category_sizes"], "[3,2,4]");
    assert_eq!(meta["category_offsets"], "[0,3,5]");
    assert!(meta["layout"].starts_with("[word, neuron]"), "{}", meta["layout"]);
    assert_eq!(meta["hook"], "blocks.7.mlp.hook_pre");
    assert_eq!(meta["pooling"], "last");
    let categories: Value = serde_json::from_str(&meta["categories"]).unwrap();
    assert_eq!(categories[2]["name"], "places");
    assert_eq!(categories[2]["source"], "places.txt");
    assert_eq!(categories[2]["offset"], 5);

    // Every category gets its means and SDs.
    let csv = fs::read_to_string(out.join("neurons.csv")).unwrap();
    assert!(csv.starts_with(
        "neuron,mean_motion,std_motion,mean_speech,std_speech,mean_places,std_places,t,p,cohen_d,p_bonferroni,q_bh\n"
    ));
}

/// `--no-causal` skips the test (its JSON is null and no figure is written, nor left from an
/// earlier run in a reused folder); `--json` keys the sets and effects by the categories.
#[test]
fn the_causal_test_is_keyed_by_category_and_can_be_skipped() {
    let cwd = workdir();
    let mut args: Vec<String> =
        vec!["challenge".into(), "--model-dir".into(), tiny_model().display().to_string()];
    for (name, words) in SMALL_CATEGORIES {
        fs::write(cwd.path().join(format!("{name}.txt")), words.join("\n")).unwrap();
        args.extend(["--category".into(), format!("{name}={name}.txt")]);
    }
    let model_and_categories = args.len();
    args.extend(
        ["--out-dir", "out", "--json", "--causal-neurons", "3", "--causal-sets", "4"].map(String::from),
    );
    let base: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = neoprobe(cwd.path(), &[&base[..], &["--causal-ablation", "mean"]].concat(), &[]);
    run.assert_success("causal test with custom categories");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let causal = &json["causal"];
    assert_eq!(causal["n_neurons"], 3);
    assert_eq!(causal["random_sets"], 4);
    assert_eq!(causal["mode"], "mean");
    assert_eq!(causal["hook"], "blocks.8.mlp.hook_post");
    for (set, own, other) in [("motion_set", "motion", "speech"), ("speech_set", "speech", "motion")] {
        let s = &causal[set];
        assert_eq!(s["neurons"].as_array().unwrap().len(), 3, "{causal}");
        let (a, b) =
            (s[format!("effect_{own}")].as_f64().unwrap(), s[format!("effect_{other}")].as_f64().unwrap());
        assert!(a > 0.0 && b > 0.0, "{causal}");
        assert!((s["difference"].as_f64().unwrap() - (a - b)).abs() <= 1e-15, "{causal}");
        let p = s["p_value"].as_f64().unwrap();
        assert!([0.2, 0.4, 0.6, 0.8, 1.0].iter().any(|&q| (p - q).abs() < 1e-12), "{p}");
    }
    assert!(causal["random"]["p95"].as_f64().unwrap() > 0.0, "{causal}");
    assert!(causal["random"]["effect_places"].is_f64(), "{causal}");
    let report = fs::read_to_string(cwd.path().join("out/report.md")).unwrap();
    assert!(
        report.contains("## 4. Does ablating them matter?") && report.contains("(causal.png)"),
        "{report}"
    );
    assert!(cwd.path().join("out/causal.png").is_file());

    let skipped = neoprobe(
        cwd.path(),
        &[&base[..model_and_categories], &["--out-dir", "out", "--force", "--json", "--no-causal"]].concat(),
        &[],
    );
    skipped.assert_success("--no-causal");
    let json: Value = serde_json::from_str(&skipped.stdout).unwrap();
    assert!(json["causal"].is_null(), "{}", skipped.stdout);
    assert!(!cwd.path().join("out/causal.png").exists(), "a stale causal.png was left");
    let report = fs::read_to_string(cwd.path().join("out/report.md")).unwrap();
    assert!(report.contains("Not run (`--no-causal`)."), "{report}");
    assert_eq!(json["files"].as_array().unwrap().len(), 7);
}

/// The library's outcome holds what the files hold: the activations bit for bit, the neuron
/// table column by column as neurons.csv prints it; its summary keys the top neurons by the
/// categories given, and is what `--json` prints.
#[test]
fn outcome_values_are_what_the_files_hold() {
    use neoprobe::challenge::stats::format_f64;
    use neoprobe::challenge::{run_challenge, CategorySpec, ChallengeArgs};
    use neoprobe::engine::ModelSource;
    use neoprobe::hub::FetchOptions;
    use neoprobe::model::DEFAULT_LAYER;
    use neoprobe::notes::Silent;
    use neoprobe::pool::Pool;

    let cwd = workdir();
    let mut categories = Vec::new();
    for (name, words) in SMALL_CATEGORIES {
        let file = cwd.path().join(format!("{name}.txt"));
        fs::write(&file, words.join("\n")).unwrap();
        categories.push(CategorySpec::parse(&format!("{name}={}", file.display())).unwrap());
    }
    let out = cwd.path().join("out");
    let args = ChallengeArgs {
        model: ModelSource::Dir(tiny_model()),
        categories,
        layer: DEFAULT_LAYER,
        pool: Pool::Mean,
        prefix_space: false,
        out_dir: out.clone(),
        force: false,
        variant: None,
        fetch: FetchOptions::default(),
        batch_tokens: None,
        permutations: 20,
        seed: 0,
        sweeps: vec![],
        causal: Some(neoprobe::challenge::CausalArgs::default()),
    };
    let outcome = run_challenge(&args, &Silent).unwrap();

    let (shape, values) = read_npy(&out.join("activations.npy"));
    assert_eq!(outcome.shape, shape);
    assert_eq!(outcome.summary.shape, shape);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&outcome.activations), bits(&values));

    let csv = fs::read_to_string(out.join("neurons.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let names: Vec<&str> = outcome.neurons.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, header);
    for (i, column) in outcome.neurons.iter().enumerate() {
        let printed: Vec<String> = column.values.iter().map(|v| format_f64(*v)).collect();
        let in_file: Vec<&str> = rows.iter().map(|r| r[i]).collect();
        assert_eq!(printed, in_file, "column {}", column.name);
    }

    // The top neurons of the first two categories, under their names, first category first.
    let keys: Vec<&str> = outcome.summary.top_neurons.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["motion", "speech"]);
    let text = serde_json::to_string_pretty(&outcome.summary).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let top = json["top_neurons"].as_object().unwrap();
    assert_eq!(top.len(), 2, "{text}");
    assert!(top["motion"][0]["t"].as_f64().unwrap() > 0.0 && top["speech"][0]["t"].as_f64().unwrap() < 0.0);
    assert!(text.find("\"motion\": [").unwrap() < text.find("\"speech\": [").unwrap(), "{text}");
    assert_eq!(json, serde_json::to_value(&outcome.summary).unwrap());
    assert_eq!(json["categories"], serde_json::json!(["motion", "speech", "places"]));
    assert_eq!(json["permutation"]["n"], 20);
    assert_eq!(json["files"].as_array().unwrap().len(), outcome.files.len());
    assert!(outcome.model.commit.is_none() && json["commit"].is_null());
}

#[test]
fn prefix_space_force_and_kernel_variant() {
    let cwd = workdir();
    let out = cwd.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("notes.txt"), "mine").unwrap();
    fs::write(out.join("report.md"), "old report").unwrap();
    let model = tiny_model();
    let args =
        ["challenge", "--model-dir", model.to_str().unwrap(), "--prefix-space", "--kernel-variant", "simple"];

    // A folder holding files is refused without --force, and left as it was.
    let refused = neoprobe(cwd.path(), &[&args[..], &["--out-dir", "out"]].concat(), &[]);
    let line = refused.assert_one_line_error("non-empty output folder");
    assert!(line.contains("output folder out already holds 2 entries; pass --force"), "{line}");
    assert_eq!(entries(&out), vec!["notes.txt", "report.md"]);

    // With --force the challenge's files are replaced and the others kept.
    let run = neoprobe(cwd.path(), &[&args[..], &["--out-dir", "out", "--force"]].concat(), &[]);
    run.assert_success("--force");
    assert_all_outputs(&out);
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    assert_ne!(fs::read_to_string(out.join("report.md")).unwrap(), "old report");
    assert_eq!(entries(cwd.path()), vec!["out"]);
    assert!(run.stdout.contains("prefix space yes"), "{}", run.stdout);

    let (_, _, meta) = read_safetensors(&out.join("activations.safetensors"));
    let token_ids: Vec<Vec<u32>> = serde_json::from_str(&meta["token_ids"]).unwrap();
    assert_eq!(token_ids, HfWords::get().ids_prefix_space, "token ids with one leading space");
    assert_eq!(meta["prefix_space"], "true");
    assert_eq!(meta["kernel_variant"], "simple");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(out.join("neurons.csv")).unwrap().permissions().mode();
        assert_ne!(mode & 0o044, 0, "output files are readable by others as usual (mode {mode:o})");
    }
}

/// A model folder like the tiny model but with a tokenizer that drops what it does not know (a
/// BPE over lowercase letters and no unknown token), so that some words give no token at all.
fn model_with_letters_only_tokenizer(dir: &Path) {
    fs::create_dir(dir).unwrap();
    for name in ["config.json", "model.safetensors"] {
        fs::copy(tiny_model().join(name), dir.join(name)).unwrap();
    }
    let vocab: serde_json::Map<String, Value> =
        ('a'..='z').enumerate().map(|(i, c)| (c.to_string(), Value::from(i))).collect();
    let tokenizer =
        serde_json::json!({ "version": "1.0", "model": { "type": "BPE", "vocab": vocab, "merges": [] } });
    fs::write(dir.join("tokenizer.json"), serde_json::to_vec(&tokenizer).unwrap()).unwrap();
}

/// Whether this process can create files in `dir` (root can in a read-only folder).
fn can_write_in(dir: &Path) -> bool {
    tempfile::tempfile_in(dir).is_ok()
}

#[test]
fn bad_inputs_fail_with_one_line_and_write_nothing() {
    let model = tiny_model().display().to_string();
    struct Case {
        name: &'static str,
        files: Vec<(&'static str, Vec<u8>)>,
        args: Vec<String>,
        expect: Vec<String>,
    }
    fn case(name: &'static str, files: &[(&'static str, &[u8])], args: &[&str], expect: &[&str]) -> Case {
        Case {
            name,
            files: files.iter().map(|(n, b)| (*n, b.to_vec())).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            expect: expect.iter().map(|s| s.to_string()).collect(),
        }
    }
    let two: &[u8] = b"dog\ncat\n";
    let layers = TINY_LAYERS.to_string();
    let layer_message = format!("--layer {layers} is out of range: the model has {layers} blocks");
    let mut cases = vec![
        case(
            "category with one word",
            &[("one.txt", b"run\n"), ("two.txt", two)],
            &["--category", "verbs=one.txt", "--category", "nouns=two.txt"],
            &["category verbs (one.txt) has 1 word", "at least 2 words"],
        ),
        case(
            "duplicate word in a list",
            &[("dup.txt", b"run\nwalk\nsing\n\nrun\n")],
            &["--verbs", "dup.txt"],
            &["dup.txt has \"run\" on lines 1 and 5", "keep the first and delete the others"],
        ),
        case(
            "word in two categories",
            &[("a.txt", b"run\nwalk\n"), ("b.txt", b"dog\nwalk\n")],
            &["--category", "verbs=a.txt", "--category", "nouns=b.txt"],
            &["\"walk\" is in category verbs (a.txt line 2) and in category nouns (b.txt line 2)"],
        ),
        case(
            "word that gives no token",
            &[("v.txt", b"run\nwalk\n"), ("n.txt", "dog\n\u{e9}\u{e9}\n".as_bytes())],
            &["--model-dir", "letters", "--verbs", "v.txt", "--nouns", "n.txt"],
            &["n.txt line 2", "tokenizes to nothing"],
        ),
        case("--category without =", &[], &["--category", "verbs", "--category", "nouns=x"], &["has no '='"]),
        case(
            "--category with an empty name",
            &[("x.txt", two)],
            &["--category", "=x.txt", "--category", "b=x.txt"],
            &["empty name"],
        ),
        case("a single category", &[("x.txt", two)], &["--category", "a=x.txt"], &["at least 2 categories"]),
        case(
            "two categories of one name",
            &[("x.txt", two), ("y.txt", b"a\nb\n")],
            &["--category", "a=x.txt", "--category", "a=y.txt"],
            &["two categories are named \"a\""],
        ),
        case(
            "two categories of one column name",
            &[("x.txt", two), ("y.txt", b"a\nb\n")],
            &["--category", "past-tense=x.txt", "--category", "past tense=y.txt"],
            &["would share the neurons.csv columns mean_past_tense/std_past_tense"],
        ),
        case(
            "out dir under a file",
            &[("file.txt", b"x")],
            &["--out-dir", "file.txt/out"],
            &["file.txt is a file, not a folder"],
        ),
        case("out dir is a file", &[("file.txt", b"x")], &["--out-dir", "file.txt"], &["not a folder"]),
        case(
            "out dir in a missing folder",
            &[],
            &["--out-dir", "nowhere/out"],
            &["folder nowhere does not exist"],
        ),
        case("layer out of range", &[], &["--layer", &layers], &[&layer_message]),
        case(
            "empty word list",
            &[("empty.txt", b"\n  \n")],
            &["--nouns", "empty.txt"],
            &["empty.txt has no words"],
        ),
        case(
            "non-UTF-8 word list",
            &[("latin1.txt", b"caf\xe9\nrun\n")],
            &["--verbs", "latin1.txt"],
            &["latin1.txt is not UTF-8"],
        ),
        case("missing word list", &[], &["--verbs", "nope.txt"], &["cannot read word list nope.txt"]),
        case(
            "no causal neurons",
            &[],
            &["--causal-neurons", "0"],
            &["--causal-neurons must be at least 1", "--no-causal"],
        ),
        case(
            "causal sets that would overlap",
            &[],
            &["--causal-neurons", "129"],
            &["--causal-neurons 129 is more than half of the hook's 256 neurons", "use at most 128"],
        ),
        case(
            "missing model folder",
            &[],
            &["--model-dir", "no-model"],
            &["model folder no-model does not exist"],
        ),
    ];
    // A read-only output parent: a chmod'ed folder, or (for root, whom permissions do not stop)
    // a folder of /sys, where nobody may create anything.
    let probe = workdir();
    let ro = probe.path().join("ro");
    fs::create_dir(&ro).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    }
    let read_only_out = if can_write_in(&ro) {
        "/sys/neoprobe-challenge-test".to_string()
    } else {
        ro.join("out").display().to_string()
    };
    cases.push(case("read-only out dir", &[], &["--out-dir", &read_only_out], &["not writable"]));

    for case in cases {
        let cwd = workdir();
        for (name, bytes) in &case.files {
            fs::write(cwd.path().join(name), bytes).unwrap();
        }
        if case.args.iter().any(|a| a == "letters") {
            model_with_letters_only_tokenizer(&cwd.path().join("letters"));
        }
        let before = entries(cwd.path());
        let mut args = vec!["challenge".to_string()];
        if !case.args.iter().any(|a| a == "--model-dir") {
            args.extend(["--model-dir".to_string(), model.clone()]);
        }
        args.extend(case.args.iter().cloned());
        let run = neoprobe(cwd.path(), &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
        let line = run.assert_one_line_error(case.name);
        for needle in &case.expect {
            assert!(line.contains(needle.as_str()), "{}: {line:?} lacks {needle:?}", case.name);
        }
        println!("{}: {line}", case.name);
        assert_eq!(entries(cwd.path()), before, "{}: files appeared", case.name);
        assert!(!Path::new(&read_only_out).exists());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }
}
