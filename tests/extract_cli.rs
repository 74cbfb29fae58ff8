//! `neoprobe extract` as a user runs it: outputs checked against HF, and every kind of bad input
//! giving a one-line error, a non-zero exit, no panic and no output file.

mod support;

use neoprobe::output::{safetensors_bytes, NamedTensor};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TINY: &str = "fixtures/tiny-neo";

struct Run {
    ok: bool,
    stderr: String,
}

fn neoprobe(args: &[&str]) -> Run {
    neoprobe_with_env(args, &[])
}

fn neoprobe_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output =
        Command::new(env!("CARGO_BIN_EXE_neoprobe")).args(args).envs(env.iter().copied()).output().unwrap();
    Run { ok: output.status.success(), stderr: String::from_utf8_lossy(&output.stderr).into_owned() }
}

/// Reads a float32 C-order `.npy` written by neoprobe: (shape, values).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape_text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[10 + header_len..]);
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

fn hf_tensor(name: &str) -> Vec<f32> {
    let bytes = std::fs::read("fixtures/hf_activations.safetensors").unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    bytemuck::pod_collect_to_vec(file.tensor(name).unwrap().data())
}

fn hf_word_token_counts() -> Vec<usize> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/hf_tokens.json").unwrap()).unwrap();
    json["words"].as_array().unwrap().iter().map(|w| w["ids"].as_array().unwrap().len()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn words_are_mean_pooled_like_hf() {
    let dir = tempfile::tempdir().unwrap();
    let words = dir.path().join("words.txt");
    let all: String = std::fs::read_to_string("data/verbs.txt").unwrap()
        + &std::fs::read_to_string("data/nouns.txt").unwrap();
    std::fs::write(&words, &all).unwrap();
    let out = dir.path().join("acts.npy");
    let run = neoprobe(&[
        "extract",
        "--model-dir",
        TINY,
        "--words",
        words.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.stderr);
    let (shape, values) = read_npy(&out);
    assert_eq!(shape, vec![200, 256]);
    // HF's per-token c_fc output, averaged over each word's tokens.
    let hf = hf_tensor("words.blocks.8.mlp.hook_pre");
    let mut expected = Vec::new();
    let mut token = 0;
    for n in hf_word_token_counts() {
        for c in 0..256 {
            expected.push((0..n).map(|i| hf[(token + i) * 256 + c] as f64).sum::<f64>() as f32 / n as f32);
        }
        token += n;
    }
    let err = max_abs_diff(&values, &expected);
    assert!(err <= 2e-6, "pooled activations differ from HF by {err}");
}

#[test]
fn text_goes_whole_with_metadata_and_can_be_cut() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("text.safetensors");
    let run = neoprobe(&[
        "extract",
        "--model-dir",
        TINY,
        "--text",
        "fixtures/text.txt",
        "--hook",
        "transformer.h.7.mlp.c_fc",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.stderr);
    let bytes = std::fs::read(&out).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    assert_eq!(metadata["hooks"], r#"["blocks.7.mlp.hook_pre"]"#);
    assert_eq!(metadata["pooling"], r#"["none"]"#);
    assert!(metadata["adapter"].len() > 3);
    let file = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.names(), ["blocks.7.mlp.hook_pre"], "one tensor, named by its hook");
    let tensor = file.tensor("blocks.7.mlp.hook_pre").unwrap();
    assert_eq!(tensor.shape(), &[133, 256]);
    let values: Vec<f32> = bytemuck::pod_collect_to_vec(tensor.data());
    let err = max_abs_diff(&values, &hf_tensor("text.blocks.7.mlp.hook_pre"));
    assert!(err <= 2e-6, "text activations differ from HF by {err}");

    let cut = dir.path().join("cut.npy");
    let run = neoprobe(&[
        "extract",
        "--model-dir",
        TINY,
        "--text",
        "fixtures/text.txt",
        "--max-tokens",
        "50",
        "--pool",
        "last",
        "--out",
        cut.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stderr.contains("cut to the first 50"), "{}", run.stderr);
    assert_eq!(read_npy(&cut).0, vec![1, 256]);
}

/// A copy of the tiny model folder, to break one piece of.
fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(Path::new(TINY).join(file), model.join(file)).unwrap();
    }
    (dir, model)
}

/// Rewrites the model's safetensors file with `edit` applied to its tensors.
fn rewrite_weights(model: &Path, edit: impl Fn(&str, Vec<usize>) -> Option<Vec<usize>>) {
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| {
            let shape = edit(&name, view.shape().to_vec())?;
            Some((name, shape, bytemuck::pod_collect_to_vec(view.data())))
        })
        .collect();
    let named: Vec<NamedTensor> =
        tensors.iter().map(|(n, s, d)| NamedTensor { name: n, shape: s.clone(), data: d }).collect();
    std::fs::write(model.join("model.safetensors"), safetensors_bytes(&named, &HashMap::new()).unwrap())
        .unwrap();
}

/// Runs extract and checks the failure is a clean one-line error containing `expect`.
fn assert_clean_failure(args: &[&str], out: &Path, expect: &str) {
    assert_clean_failure_with_env(args, &[], out, expect)
}

fn assert_clean_failure_with_env(args: &[&str], env: &[(&str, &str)], out: &Path, expect: &str) {
    let run = neoprobe_with_env(args, env);
    assert!(!run.ok, "expected a failure for {args:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {:?}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(lines[0].contains(expect), "{:?} does not mention {expect:?}", lines[0]);
    assert!(!out.exists(), "an output file was left at {}", out.display());
    let Ok(siblings) = std::fs::read_dir(out.parent().unwrap()) else { return };
    let leftovers: Vec<_> = siblings
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".neoprobe"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn extract_args<'a>(model: &'a str, words: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["extract", "--model-dir", model, "--words", words, "--out", out]
}

#[test]
fn broken_model_folders_are_named_errors() {
    type Break = fn(&Path);
    let cases: Vec<(&str, Break, &str)> = vec![
        ("missing config", |m| std::fs::remove_file(m.join("config.json")).unwrap(), "config.json"),
        (
            "config not JSON",
            |m| std::fs::write(m.join("config.json"), "{ not json").unwrap(),
            "not valid JSON",
        ),
        (
            "config missing a field",
            |m| {
                let mut c: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(m.join("config.json")).unwrap()).unwrap();
                c.as_object_mut().unwrap().remove("num_heads");
                std::fs::write(m.join("config.json"), c.to_string()).unwrap();
            },
            "num_heads",
        ),
        (
            "unsupported activation",
            |m| {
                let mut c: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(m.join("config.json")).unwrap()).unwrap();
                c["activation_function"] = "relu".into();
                std::fs::write(m.join("config.json"), c.to_string()).unwrap();
            },
            "relu",
        ),
        ("no tokenizer", |m| std::fs::remove_file(m.join("tokenizer.json")).unwrap(), "tokenizer.json"),
        (
            "truncated weights",
            |m| {
                let bytes = std::fs::read(m.join("model.safetensors")).unwrap();
                std::fs::write(m.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
            },
            "not a valid safetensors file",
        ),
        (
            "garbage header",
            |m| {
                let mut bytes = std::fs::read(m.join("model.safetensors")).unwrap();
                bytes[8..40].copy_from_slice(b"this is not a safetensors header");
                std::fs::write(m.join("model.safetensors"), bytes).unwrap();
            },
            "not a valid safetensors file",
        ),
        (
            "offsets beyond the file",
            |m| {
                let bytes = std::fs::read(m.join("model.safetensors")).unwrap();
                let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
                let (name, _) = header
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| *k != "__metadata__")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap();
                header[&name]["data_offsets"][1] = serde_json::json!(bytes.len() * 2);
                let text = header.to_string();
                let mut out = (text.len() as u64).to_le_bytes().to_vec();
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(&bytes[8 + n..]);
                std::fs::write(m.join("model.safetensors"), out).unwrap();
            },
            "not a valid safetensors file",
        ),
        (
            "missing tensor",
            |m| rewrite_weights(m, |name, shape| (name != "transformer.h.3.mlp.c_fc.bias").then_some(shape)),
            "transformer.h.3.mlp.c_fc.bias",
        ),
        (
            "wrong shape",
            |m| {
                rewrite_weights(m, |name, shape| {
                    Some(if name == "transformer.h.2.mlp.c_proj.weight" { vec![256, 64] } else { shape })
                })
            },
            "[256, 64]",
        ),
    ];
    for (what, break_it, expect) in cases {
        let (dir, model) = model_copy();
        break_it(&model);
        let out = dir.path().join("out.npy");
        println!("{what}");
        assert_clean_failure(
            &extract_args(model.to_str().unwrap(), "data/verbs.txt", out.to_str().unwrap()),
            &out,
            expect,
        );
    }
}

#[test]
fn bad_words_hooks_and_paths_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let out_s = out.to_str().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n   \n\t\n").unwrap();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9\n").unwrap();
    assert_clean_failure(&extract_args("no/such/model", "data/verbs.txt", out_s), &out, "does not exist");
    assert_clean_failure(&extract_args(TINY, "no/such/words.txt", out_s), &out, "no/such/words.txt");
    assert_clean_failure(&extract_args(TINY, empty.to_str().unwrap(), out_s), &out, "no words");
    assert_clean_failure(&extract_args(TINY, latin1.to_str().unwrap(), out_s), &out, "not UTF-8");
    let mut args = extract_args(TINY, "data/verbs.txt", out_s);
    args.extend(["--hook", "blocks.8.mlp.hook_middle"]);
    assert_clean_failure(&args, &out, "valid forms: hook_embed, hook_pos_embed, blocks.{L}.hook_resid_pre");
    let mut args = extract_args(TINY, "data/verbs.txt", out_s);
    args.extend(["--hook", "blocks.12.mlp.hook_pre"]);
    assert_clean_failure(&args, &out, "12 blocks");
    let unwritable = dir.path().join("missing-folder").join("out.npy");
    assert_clean_failure(
        &extract_args(TINY, "data/verbs.txt", unwritable.to_str().unwrap()),
        &unwritable,
        "does not exist",
    );
    let under_a_file = Path::new("data/verbs.txt/out.npy");
    assert_clean_failure(
        &extract_args(TINY, "data/verbs.txt", under_a_file.to_str().unwrap()),
        under_a_file,
        "does not exist",
    );
    let wrong_ext = dir.path().join("out.csv");
    assert_clean_failure(
        &extract_args(TINY, "data/verbs.txt", wrong_ext.to_str().unwrap()),
        &wrong_ext,
        ".npy or .safetensors",
    );
}

#[test]
fn no_gpu_adapter_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    // Hide every Vulkan driver from the loader and allow no other backend.
    let env = [
        ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
        ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
        ("WGPU_BACKEND", "vulkan"),
    ];
    let args = extract_args(TINY, "data/verbs.txt", out.to_str().unwrap());
    assert_clean_failure_with_env(&args, &env, &out, "apt-get install mesa-vulkan-drivers libvulkan1");
}

/// Half-precision checkpoints are widened to f32 on load: an F16 and a BF16 copy of the tiny
/// model give the F32 model's outputs up to the rounding of their weights.
#[test]
fn f16_and_bf16_weights_are_widened_on_load() {
    use neoprobe::model::ModelDir;
    let original = ModelDir::open(Path::new(TINY)).unwrap();
    let config = original.config().unwrap();
    let f32_weights = original.weights_of_blocks(&config, 12).unwrap();
    for (dtype, to_half, from_half) in [
        (
            safetensors::Dtype::F16,
            (|v: f32| half::f16::from_f32(v).to_bits()) as fn(f32) -> u16,
            (|b: u16| half::f16::from_bits(b).to_f32()) as fn(u16) -> f32,
        ),
        (
            safetensors::Dtype::BF16,
            |v| half::bf16::from_f32(v).to_bits(),
            |b| half::bf16::from_bits(b).to_f32(),
        ),
    ] {
        let (dir, model) = model_copy();
        let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let halves: Vec<(String, Vec<usize>, Vec<u8>)> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
                let bits: Vec<u8> = values.iter().flat_map(|&v| to_half(v).to_le_bytes()).collect();
                (name, view.shape().to_vec(), bits)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = halves
            .iter()
            .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap()))
            .collect();
        std::fs::write(model.join("model.safetensors"), safetensors::serialize(views, None).unwrap())
            .unwrap();

        let widened = ModelDir::open(&model).unwrap().weights_of_blocks(&config, 12).unwrap();
        let expected: Vec<f32> =
            f32_weights.blocks[8].c_fc.weight.to_vec().iter().map(|&v| from_half(to_half(v))).collect();
        assert_eq!(widened.blocks[8].c_fc.weight.to_vec(), expected, "{dtype:?} c_fc weight");
        let out = dir.path().join("out.npy");
        let run = neoprobe(&[
            "extract",
            "--model-dir",
            model.to_str().unwrap(),
            "--words",
            "data/nouns.txt",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.ok, "{dtype:?}: {}", run.stderr);
        assert_eq!(read_npy(&out).0, vec![100, 256]);
    }
}

/// A sharded checkpoint gives the single file's activations bit for bit, from a local folder and
/// fetched from the hub (a local fake of it, into a fresh HF_HOME).
#[test]
fn sharded_checkpoints_give_the_single_files_activations() {
    let dir = tempfile::tempdir().unwrap();
    let extract = |model: &[&str], env: &[(&str, &str)], out: &Path| -> Vec<u8> {
        let mut args = vec!["extract"];
        args.extend(model);
        args.extend(["--words", "data/verbs.txt", "--out", out.to_str().unwrap()]);
        let mut command = Command::new(env!("CARGO_BIN_EXE_neoprobe"));
        for key in ["HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_TOKEN", "HF_TOKEN_PATH"] {
            command.env_remove(key);
        }
        let output = command.args(&args).envs(env.iter().copied()).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        std::fs::read(out).unwrap()
    };
    let single = extract(&["--model-dir", TINY], &[], &dir.path().join("single.npy"));

    let local = dir.path().join("sharded");
    std::fs::create_dir(&local).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(Path::new(TINY).join(file), local.join(file)).unwrap();
    }
    let weights = std::fs::read(Path::new(TINY).join("model.safetensors")).unwrap();
    for (name, bytes) in support::shard_weights(&weights, 3) {
        std::fs::write(local.join(name), bytes).unwrap();
    }
    let from_local = extract(&["--model-dir", local.to_str().unwrap()], &[], &dir.path().join("local.npy"));
    assert!(from_local == single, "a local sharded folder gives other activations");

    let id = "test-org/tiny-sharded";
    let hub = support::FakeHub::start(vec![support::FakeRepo::new(id, support::fixture_files(3))]);
    let home = dir.path().join("hf");
    let env = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", home.to_str().unwrap())];
    let from_hub = extract(&["--model", id, "--revision", "main"], &env, &dir.path().join("hub.npy"));
    assert!(from_hub == single, "a sharded hub repo gives other activations");
    assert!(home
        .join("hub/models--test-org--tiny-sharded/snapshots")
        .join(support::COMMIT)
        .join("model.safetensors.index.json")
        .is_file());
}
