//! `neoprobe patch` against HF: the heatmap of fixtures/interventions/hf_interventions.safetensors
//! (`patch.logit_diff`, made by fixtures/make_intervention_fixtures.py with a forward pre-hook on
//! each HF block replacing one position of its input by the clean run's) on every variant; its
//! files; bad inputs.

mod common;

use common::{neoprobe, path, read_npy};
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::notes::Silent;
use neoprobe::patch::{patch, PatchArgs, PromptPair, DEFAULT_HOOKS};
use std::path::{Path, PathBuf};

const MODEL: &str = "fixtures/tiny-neo";
/// Differences of two logits, each within the logits tolerance of tests/hf_fixtures.rs (5e-6).
const DIFF_TOLERANCE: f64 = 1e-5;

fn args(out_dir: PathBuf, variant: Variant) -> PatchArgs {
    PatchArgs {
        model: neoprobe::engine::ModelSource::Dir(MODEL.into()),
        fetch: FetchOptions::default(),
        pairs: vec![PromptPair {
            clean: std::fs::read_to_string("fixtures/interventions/clean.txt").unwrap(),
            corrupt: std::fs::read_to_string("fixtures/interventions/corrupt.txt").unwrap(),
            answer: " cat".into(),
            wrong: " dog".into(),
        }],
        hooks: DEFAULT_HOOKS.into(),
        variant: Some(variant),
        out_dir,
        force: false,
    }
}

fn heatmap_matches_hf(variant: Variant) {
    let bytes = std::fs::read("fixtures/interventions/hf_interventions.safetensors").unwrap();
    let fixture = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&metadata.metadata().as_ref().unwrap()["patch"]).unwrap();
    assert_eq!((meta["answer"].as_str(), meta["wrong"].as_str()), (Some(" cat"), Some(" dog")));
    let hf = fixture.tensor("patch.logit_diff").unwrap();
    let hf_values: Vec<f32> = bytemuck::pod_collect_to_vec(hf.data());

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("patch");
    let report = patch(&args(out.clone(), variant), &Silent).unwrap();
    assert_eq!(report.shape, hf.shape().to_vec());
    assert_eq!(report.hooks.len(), 12);
    let worst =
        report.logit_diff.iter().zip(&hf_values).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
    println!("{variant}: patched logit differences within {worst:e} of HF's");
    assert!(worst <= DIFF_TOLERANCE, "{variant}: patched logit differences differ from HF's by {worst:e}");
    for (name, ours) in [("clean_diff", report.clean_diff), ("corrupt_diff", report.corrupt_diff)] {
        let theirs = meta[name].as_f64().unwrap();
        assert!((ours - theirs).abs() <= DIFF_TOLERANCE, "{variant}: {name} {ours} vs HF's {theirs}");
    }
    // Patching the only differing token into block 0's input gives the clean run back.
    let differing = report.clean_tokens.iter().zip(&report.corrupt_tokens).position(|(a, b)| a != b).unwrap();
    let restored = report.logit_diff[differing] as f64;
    assert!(
        (restored - report.clean_diff).abs() <= DIFF_TOLERANCE,
        "{variant}: {restored} vs {}",
        report.clean_diff
    );
    // The files hold what the report says.
    let (shape, raw) = read_npy(&out.join("patch_logit_diff.npy"));
    assert_eq!((shape, raw), (report.shape.clone(), report.logit_diff.clone()));
    let (_, normalized) = read_npy(&out.join("patch.npy"));
    assert!(normalized.iter().zip(&report.normalized).all(|(a, b)| a.to_bits() == b.to_bits()));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("patch.json")).unwrap()).unwrap();
    assert_eq!(json["shape"], serde_json::json!([12, report.clean_tokens.len()]));
    assert_eq!(json["corrupt_tokens"][differing], " dog");
    assert!(out.join("patch.png").metadata().unwrap().len() > 1000);
}

crate::test_each_variant!(heatmap_matches_hf);

/// Pairs average: the same pair twice gives that pair's values; heads of attn.hook_z are rows.
#[test]
fn pairs_average_and_attention_heads_are_rows() {
    let dir = tempfile::tempdir().unwrap();
    let one = patch(&args(dir.path().join("one"), Variant::Cpu), &Silent).unwrap();
    let mut twice = args(dir.path().join("twice"), Variant::Cpu);
    twice.pairs = vec![twice.pairs[0].clone(), twice.pairs[0].clone()];
    let two = patch(&twice, &Silent).unwrap();
    assert_eq!(two.pairs, 2);
    assert!(one.logit_diff.iter().zip(&two.logit_diff).all(|(a, b)| (a - b).abs() <= 1e-6));
    let mut heads = args(dir.path().join("heads"), Variant::Cpu);
    heads.hooks = "blocks.3.attn.hook_z".into();
    let by_head = patch(&heads, &Silent).unwrap();
    assert_eq!(by_head.hooks, (0..4).map(|h| format!("blocks.3.attn.hook_z head {h}")).collect::<Vec<_>>());
    assert_eq!(by_head.shape, vec![4, one.shape[1]]);
    // The heads differ from one another (each patches its own columns).
    let cols = one.shape[1];
    assert!(by_head.logit_diff[..cols] != by_head.logit_diff[cols..2 * cols]);
}

#[test]
fn bad_inputs_fail_on_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let base = ["patch", "--model-dir", MODEL, "--out-dir", path(&out)];
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(&pairs, "{\"clean\": \"The cat\", \"corrupt\": \"The dog\", \"answer\": \" cat\", \"wrong\": \" dog\"}\n{\"clean\": \"A cat sat\", \"corrupt\": \"A dog sat\", \"answer\": \" cat\", \"wrong\": \" dog\"}\n").unwrap();
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"clean\": \"The cat\"}\n").unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["--pairs", path(&pairs)], "pair 2 is 3 tokens but pair 1 is 2"),
        (&["--pairs", path(&broken)], "broken.jsonl line 1: missing field"),
        (&["--clean", "The cat", "--corrupt", "The dog"], "required arguments were not provided"),
        (
            &[
                "--clean",
                "The cat sat",
                "--corrupt",
                "The big dog sat",
                "--answer",
                " cat",
                "--wrong",
                " dog",
            ],
            "the same length",
        ),
        (
            &["--clean", "The cat", "--corrupt", "The dog", "--answer", " elephantine", "--wrong", " dog"],
            "the answer \" elephantine\" is 2 tokens",
        ),
        (
            &[
                "--clean",
                "The cat",
                "--corrupt",
                "The dog",
                "--answer",
                " cat",
                "--wrong",
                " dog",
                "--hook",
                "blocks.*.attn.hook_pattern",
            ],
            "not supported",
        ),
        (
            &[
                "--clean",
                "The cat",
                "--corrupt",
                "The dog",
                "--answer",
                " cat",
                "--wrong",
                " dog",
                "--hook",
                "blocks.*.nothing",
            ],
            "matches no hook",
        ),
        (&["--clean", "", "--corrupt", "", "--answer", " cat", "--wrong", " dog"], "at least one token"),
    ];
    for (flags, expected) in cases {
        let args: Vec<&str> = base.iter().chain(flags.iter()).copied().collect();
        let run = neoprobe(&args);
        assert!(!run.ok, "{flags:?} succeeded");
        assert!(
            run.stderr.starts_with("error: ") && run.stderr.contains(expected),
            "{flags:?}: {}",
            run.stderr
        );
        if !expected.starts_with("required") {
            // The library's errors are one line; clap's usage errors add a usage hint after it.
            assert_eq!(run.stderr.lines().count(), 1, "{flags:?}: {}", run.stderr);
        }
        assert!(!Path::new(&out).exists(), "{flags:?} left an output folder");
    }
}
