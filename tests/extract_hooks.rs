//! `neoprobe extract` as researchers script it: several hooks and patterns in one forward (the
//! same bits as one hook per run), the JSON summary, the logits and the attention pattern, a
//! model from the hub, and the errors of asking for what cannot be written.

mod common;
mod support;

use common::{neoprobe, neoprobe_with_env, path, read_npy};

use safetensors::SafeTensors;
use serde_json::Value;
use std::path::Path;
use support::{FakeFile, FakeHub, FakeRepo, COMMIT};

const TINY: &str = "fixtures/tiny-neo";

fn words_file(dir: &Path) -> std::path::PathBuf {
    let words = dir.join("words.txt");
    std::fs::write(&words, "promote\ndog\nunbelievably\n").unwrap();
    words
}

/// Every tensor of a multi-hook run is bit for bit what a run of that hook alone writes.
#[test]
fn many_hooks_in_one_forward_match_single_hook_runs_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let words = words_file(dir.path());
    let all = dir.path().join("all.safetensors");
    let run = neoprobe(&[
        "extract",
        "--model-dir",
        TINY,
        "--words",
        path(&words),
        "--hook",
        "blocks.*.mlp.hook_pre",
        "--hook",
        "blocks.7.*",
        "--hook",
        "hook_embed",
        "--hook",
        "logits",
        "--out",
        path(&all),
        "--json",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    let hooks: Vec<&str> =
        summary["hooks"].as_array().unwrap().iter().map(|h| h["hook"].as_str().unwrap()).collect();
    // In the forward's order: the embeddings, blocks 0..7's hook_pre and block 7's 14 hooks
    // (one of them hook_pre), blocks 8..11's hook_pre, the logits.
    assert_eq!(hooks.len(), 1 + 12 + 13 + 1, "{hooks:?}");
    assert_eq!(hooks[0], "hook_embed");
    assert_eq!(*hooks.last().unwrap(), "logits");
    let tokenizer = neoprobe::tokenize::Tokenizer::load(&Path::new(TINY).join("tokenizer.json")).unwrap();
    let lengths: Vec<usize> = ["promote", "dog", "unbelievably"]
        .iter()
        .map(|w| tokenizer.encode_word(w, false).unwrap().len())
        .collect();
    assert_eq!(summary["n_tokens"], lengths.iter().sum::<usize>());
    assert_eq!(summary["hooks"][0]["pooling"], "mean");
    assert_eq!(summary["hooks"][13]["hook"], "blocks.7.attn.hook_pattern");
    assert!(summary["hooks"][13]["pooling"].is_null(), "the pattern is not pooled");
    let last = summary["hooks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last, serde_json::json!({"hook": "logits", "shape": [3, 50257], "pooling": "last"}));
    for key in ["out", "model", "adapter", "variant", "seconds", "n_sequences"] {
        assert!(!summary[key].is_null(), "no {key} in {summary}");
    }
    let bytes = std::fs::read(&all).unwrap();
    // In batches of at most 4 tokens (each word its own batch): the same bytes, the attention
    // patterns of shorter batches padded to the input's longest word.
    let batched = dir.path().join("batched.safetensors");
    let run = neoprobe(&[
        "extract",
        "--model-dir",
        TINY,
        "--words",
        path(&words),
        "--hook",
        "blocks.*.mlp.hook_pre",
        "--hook",
        "blocks.7.*",
        "--hook",
        "hook_embed",
        "--hook",
        "logits",
        "--out",
        path(&batched),
        "--batch-tokens",
        "4",
    ]);
    assert!(run.ok, "{}", run.stderr);
    assert!(std::fs::read(&batched).unwrap() == bytes, "streamed batches wrote other bytes");
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    let mut expected: Vec<&str> = hooks.clone();
    expected.sort();
    assert_eq!(names, expected, "one tensor per hook, named by the hook");

    for hook in [
        "blocks.3.mlp.hook_pre",
        "blocks.7.attn.hook_z",
        "blocks.7.attn.hook_pattern",
        "hook_embed",
        "logits",
    ] {
        let alone = dir.path().join(format!("{hook}.npy"));
        let run = neoprobe(&[
            "extract",
            "--model-dir",
            TINY,
            "--words",
            path(&words),
            "--hook",
            hook,
            "--out",
            path(&alone),
        ]);
        assert!(run.ok, "{hook}: {}", run.stderr);
        let (shape, values) = read_npy(&alone);
        let tensor = file.tensor(hook).unwrap();
        assert_eq!(tensor.shape(), &shape[..], "{hook}");
        let together: Vec<f32> = bytemuck::pod_collect_to_vec(tensor.data());
        assert!(
            together.iter().zip(&values).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{hook}: the multi-hook run differs from the single-hook run"
        );
    }
    // Words are mean-pooled; the logits default to the last token (the prediction after the
    // word); the pattern is per word: [words, heads, longest, longest].
    assert_eq!(file.tensor("blocks.3.mlp.hook_pre").unwrap().shape(), [3, 256]);
    assert_eq!(file.tensor("logits").unwrap().shape(), [3, 50257]);
    let longest = *lengths.iter().max().unwrap();
    assert_eq!(file.tensor("blocks.7.attn.hook_pattern").unwrap().shape(), [3, 4, longest, longest]);
}

#[test]
fn what_cannot_be_written_is_refused_before_the_forward() {
    let dir = tempfile::tempdir().unwrap();
    let words = words_file(dir.path());
    let npy = dir.path().join("two.npy");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--hook", "blocks.1.mlp.hook_pre", "--hook", "logits", "--out", path(&npy)], "holds one array"),
        (vec!["--hook", "blocks.*.mlp.hook_middle", "--out", path(&npy)], "matches no hook"),
        (
            vec!["--hook", "logits", "--pool", "max", "--out", path(&npy)],
            "--pool max does not apply to the logits",
        ),
        (vec!["--hook", "blocks.12.*", "--out", path(&npy)], "matches no hook"),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["extract", "--model-dir", TINY, "--words", path(&words)];
        args.extend(extra);
        let run = neoprobe(&args);
        assert!(!run.ok, "{args:?} succeeded");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", run.stderr);
        assert!(lines[0].starts_with("error: ") && lines[0].contains(expect), "{args:?}: {}", lines[0]);
        assert!(!npy.exists());
    }
}

/// `--model ID` goes through the hub cache as `challenge` does; the summary names the commit.
#[test]
fn a_model_from_the_hub() {
    let file = |name: &str, lfs: bool| FakeFile {
        name: name.to_string(),
        bytes: std::fs::read(Path::new(TINY).join(name)).unwrap(),
        lfs,
    };
    let repo = FakeRepo::new(
        "test-org/tiny-neo",
        vec![file("config.json", false), file("model.safetensors", true), file("tokenizer.json", true)],
    );
    let hub = FakeHub::start(vec![repo]);
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let words = words_file(dir.path());
    let (from_hub, local) = (dir.path().join("hub.npy"), dir.path().join("local.npy"));
    let env = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", path(home.path()))];
    let run = neoprobe_with_env(
        &[
            "extract",
            "--model",
            "test-org/tiny-neo",
            "--revision",
            COMMIT,
            "--words",
            path(&words),
            "--out",
            path(&from_hub),
            "--json",
        ],
        &env,
    );
    assert!(run.ok, "{}", run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["model"], "test-org/tiny-neo");
    assert_eq!(summary["commit"], COMMIT);
    assert!(hub.connections() > 0);
    let run = neoprobe(&["extract", "--model-dir", TINY, "--words", path(&words), "--out", path(&local)]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(std::fs::read(&from_hub).unwrap(), std::fs::read(&local).unwrap());
}
