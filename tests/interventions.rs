//! Interventions against HF's own: each case of fixtures/interventions/hf_interventions.safetensors
//! (made by fixtures/make_intervention_fixtures.py with torch hooks on HF's GPTNeo modules) run by
//! `extract` with the same flags, its logits held to the logits tolerances of tests/hf_fixtures.rs;
//! what an intervention leaves alone stays bit-identical; bad flags fail before any work.

mod common;

use common::{neoprobe, path};
use neoprobe::extract::{extract, ExtractArgs, ExtractInput, ExtractSummary};
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::model::InterventionKind as Kind;
use neoprobe::notes::Silent;
use neoprobe::pool::Pool;
use std::path::{Path, PathBuf};

const MODEL: &str = "fixtures/tiny-neo";
const DIR: &str = "fixtures/interventions";
/// The tolerances of HF's logits without interventions (tests/hf_fixtures.rs, docs/fidelity.md).
const LOGITS_TOLERANCE: f32 = 5e-6;
const LOGSUMEXP_TOLERANCE: f64 = 2e-6;

struct Case {
    name: String,
    input: ExtractInput,
    flags: Vec<(Kind, String)>,
}

fn kind_of(flag: &str) -> Kind {
    match flag {
        "--ablate" => Kind::Ablate,
        "--mean-ablate" => Kind::MeanAblate,
        "--set" => Kind::Set,
        "--scale" => Kind::Scale,
        "--steer" => Kind::Steer,
        "--patch" => Kind::Patch,
        other => panic!("unknown flag {other} in the fixture"),
    }
}

fn cases(metadata: &std::collections::HashMap<String, String>) -> Vec<Case> {
    let cases: Vec<serde_json::Value> = serde_json::from_str(&metadata["cases"]).unwrap();
    cases
        .iter()
        .map(|c| {
            let flags: Vec<String> = c["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().replace("{dir}", DIR))
                .collect();
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                input: match c["input"].as_str().unwrap() {
                    "words" => ExtractInput::Words(Path::new(DIR).join("words.txt")),
                    _ => ExtractInput::Text(Path::new(DIR).join("corrupt.txt")),
                },
                flags: flags.chunks(2).map(|f| (kind_of(&f[0]), f[1].clone())).collect(),
            }
        })
        .collect()
}

fn run(
    input: ExtractInput,
    hooks: &[&str],
    flags: &[(Kind, String)],
    variant: Variant,
    out: PathBuf,
    batch_tokens: Option<usize>,
) -> anyhow::Result<ExtractSummary> {
    extract(
        &ExtractArgs {
            model: neoprobe::engine::ModelSource::Dir(MODEL.into()),
            fetch: FetchOptions::default(),
            input,
            hooks: hooks.iter().map(|h| h.to_string()).collect(),
            pool: Some(Pool::None),
            prefix_space: false,
            max_tokens: None,
            out,
            variant: Some(variant),
            batch_tokens,
            interventions: flags.to_vec(),
        },
        &Silent,
    )
}

/// Every tensor of a safetensors file as f32 values.
fn tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor(name).unwrap_or_else(|_| panic!("{} has no tensor {name}", path.display()));
    (t.shape().to_vec(), bytemuck::pod_collect_to_vec(t.data()))
}

fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()
}

fn every_case_matches_hf(variant: Variant) {
    let bytes = std::fs::read(Path::new(DIR).join("hf_interventions.safetensors")).unwrap();
    let fixture = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    let columns: Vec<i64> = bytemuck::pod_collect_to_vec(fixture.tensor("columns").unwrap().data());
    let dir = tempfile::tempdir().unwrap();
    let cases = cases(&metadata);
    assert!(cases.len() >= 9, "the fixture holds every case");
    for case in cases {
        let out = dir.path().join(format!("{}.safetensors", case.name));
        run(case.input, &["logits"], &case.flags, variant, out.clone(), None)
            .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        let (shape, logits) = tensor(&out, "logits");
        let vocab = shape[1];
        let hf_logits: Vec<f32> =
            bytemuck::pod_collect_to_vec(fixture.tensor(&format!("{}.logits", case.name)).unwrap().data());
        let hf_lse: Vec<f64> =
            bytemuck::pod_collect_to_vec(fixture.tensor(&format!("{}.logsumexp", case.name)).unwrap().data());
        assert_eq!(shape[0], hf_lse.len(), "{}: one row per token", case.name);
        let mut worst = 0.0f32;
        let mut worst_lse = 0.0f64;
        for (t, row) in logits.chunks_exact(vocab).enumerate() {
            for (j, &c) in columns.iter().enumerate() {
                worst = worst.max((row[c as usize] - hf_logits[t * columns.len() + j]).abs());
            }
            worst_lse = worst_lse.max((logsumexp(row) - hf_lse[t]).abs());
        }
        println!("{variant} {}: logits {worst:e}, logsumexp {worst_lse:e}", case.name);
        assert!(worst <= LOGITS_TOLERANCE, "{variant} {}: logits differ from HF's by {worst:e}", case.name);
        assert!(
            worst_lse <= LOGSUMEXP_TOLERANCE,
            "{variant} {}: logsumexp differs by {worst_lse:e}",
            case.name
        );
    }
}

/// An intervention on block 2 leaves every hook before it bit-identical; the intervened hook
/// reads back its changed value, and the untouched columns and positions of it stay as they were.
fn before_the_intervention_nothing_changes(variant: Variant) {
    let dir = tempfile::tempdir().unwrap();
    let words = || ExtractInput::Words(Path::new(DIR).join("words.txt"));
    let hooks = ["blocks.0.*", "blocks.1.*", "blocks.2.hook_resid_pre", "blocks.2.mlp.hook_post"];
    let plain = dir.path().join("plain.safetensors");
    let changed = dir.path().join("changed.safetensors");
    run(words(), &hooks, &[], variant, plain.clone(), None).unwrap();
    let flags = [(Kind::Ablate, "blocks.2.mlp.hook_post@0:3,17".to_string())];
    let summary = run(words(), &hooks, &flags, variant, changed.clone(), None).unwrap();
    assert_eq!(summary.interventions, vec!["--ablate blocks.2.mlp.hook_post@0:3,17".to_string()]);
    for hook in summary.hooks.iter().map(|h| h.hook.as_str()).filter(|h| *h != "blocks.2.mlp.hook_post") {
        let (a, b) = (tensor(&plain, hook).1, tensor(&changed, hook).1);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{variant}: {hook} changed");
    }
    let (shape, before) = tensor(&plain, "blocks.2.mlp.hook_post");
    let (_, after) = tensor(&changed, "blocks.2.mlp.hook_post");
    // The tokens that are position 0 of their word.
    let lengths: Vec<usize> = summary_lengths(&plain);
    let firsts: Vec<usize> = lengths.iter().scan(0, |at, n| Some(std::mem::replace(at, *at + n))).collect();
    let width = shape[1];
    let mut zeroed = 0;
    for t in 0..shape[0] {
        for c in 0..width {
            let (b, a) = (before[t * width + c], after[t * width + c]);
            if firsts.contains(&t) && (c == 3 || c == 17) {
                assert_eq!(a, 0.0, "{variant}: token {t} column {c} was not zeroed");
                zeroed += 1;
            } else {
                assert_eq!(a.to_bits(), b.to_bits(), "{variant}: token {t} column {c} changed");
            }
        }
    }
    assert_eq!(zeroed, 2 * lengths.len());
}

/// The token count of each sequence, from the output's metadata.
fn summary_lengths(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let ids: Vec<Vec<u32>> =
        serde_json::from_str(&metadata.metadata().as_ref().unwrap()["token_ids"]).unwrap();
    ids.iter().map(Vec::len).collect()
}

/// Batches of any size give the same intervened values, patches included (each batch finds its
/// sequences' rows of the other run).
fn batches_do_not_change_interventions(variant: Variant) {
    let dir = tempfile::tempdir().unwrap();
    let words = || ExtractInput::Words(Path::new(DIR).join("words.txt"));
    // A patch from a run of the same words: its values where they were, a no-op in effect, but
    // every batch must find its own rows in the file.
    let source = dir.path().join("source.safetensors");
    run(words(), &["blocks.1.hook_resid_pre"], &[], variant, source.clone(), None).unwrap();
    let steer = dir.path().join("steer.npy");
    std::fs::write(&steer, neoprobe::output::npy_bytes(&[64], &[0.25; 64])).unwrap();
    let flags = [
        (Kind::Steer, format!("blocks.1.hook_resid_pre@-1={}*3", steer.display())),
        (Kind::Patch, format!("blocks.1.hook_resid_pre@0={}", source.display())),
    ];
    let one = dir.path().join("one.safetensors");
    let many = dir.path().join("many.safetensors");
    run(words(), &["blocks.2.hook_resid_pre"], &flags, variant, one.clone(), None).unwrap();
    run(words(), &["blocks.2.hook_resid_pre"], &flags, variant, many.clone(), Some(4)).unwrap();
    let (a, b) = (tensor(&one, "blocks.2.hook_resid_pre").1, tensor(&many, "blocks.2.hook_resid_pre").1);
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{variant}: batches changed the result"
    );
}

/// Interventions that change nothing, on the hooks whose value the fused kernels never store
/// apart (mlp.hook_pre before GELU, attn_out and mlp_out before the residual add) and on the
/// embeddings summed on the host: the unfused epilogue and the host's sum give the fused
/// kernels' bits, so the logits are the plain run's.
fn the_unfused_paths_give_the_fused_bits(variant: Variant) {
    let dir = tempfile::tempdir().unwrap();
    let words = || ExtractInput::Words(Path::new(DIR).join("words.txt"));
    let plain = dir.path().join("plain.safetensors");
    run(words(), &["logits"], &[], variant, plain.clone(), None).unwrap();
    let (_, expected) = tensor(&plain, "logits");
    for hook in [
        "blocks.1.mlp.hook_pre",
        "blocks.2.hook_attn_out",
        "blocks.3.hook_mlp_out",
        "hook_embed",
        "hook_pos_embed",
    ] {
        let out = dir.path().join(format!("{hook}.safetensors"));
        let flags = [(Kind::Scale, format!("{hook}=1"))];
        run(words(), &["logits"], &flags, variant, out.clone(), None).unwrap();
        let (_, got) = tensor(&out, "logits");
        assert!(
            got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{variant}: scaling {hook} by 1 changed the logits"
        );
    }
}

crate::test_each_variant!(
    every_case_matches_hf,
    the_unfused_paths_give_the_fused_bits,
    before_the_intervention_nothing_changes,
    batches_do_not_change_interventions
);

#[test]
fn bad_flags_fail_on_one_line_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let words = Path::new(DIR).join("words.txt");
    let base = ["extract", "--model-dir", MODEL, "--words", path(&words), "--out", path(&out)];
    let cases: [(&[&str], &str); 8] = [
        (&["--ablate", "blocks.1.mlp.hook_post:999"], "column 999 is out of range"),
        (&["--ablate", "blocks.99.mlp.hook_post"], "12 blocks"),
        (&["--ablate", "blocks.1.mlp.hook_middle"], "valid forms"),
        (&["--ablate", "blocks.1.attn.hook_pattern"], "not supported"),
        (
            &["--steer", "blocks.1.hook_resid_pre=fixtures/interventions/means.npy*2"],
            "a steering vector of blocks.1.hook_resid_pre has 64",
        ),
        (&["--set", "blocks.1.hook_resid_pre:head=1=0"], "has no heads"),
        (
            &["--patch", "blocks.1.hook_resid_pre=fixtures/interventions/clean_resid_pre.safetensors"],
            "holds 1 sequences but this run has 6",
        ),
        (&["--mean-ablate", "blocks.1.mlp.hook_post=nowhere.npy"], "nowhere.npy does not exist"),
    ];
    for (flags, expected) in cases {
        let args: Vec<&str> = base.iter().chain(flags.iter()).copied().collect();
        let run = neoprobe(&args);
        assert!(!run.ok, "{flags:?} succeeded");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{flags:?}: {}", run.stderr);
        assert!(lines[0].starts_with("error: ") && lines[0].contains(expected), "{flags:?}: {}", lines[0]);
        assert!(!out.exists(), "{flags:?} left an output file");
    }
}
