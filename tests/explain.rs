//! `neoprobe explain` and `neoprobe trace` on the committed tiny fixture model, as a user runs
//! them: their JSON against the contract, what explain says against what the kernel and
//! `extract` give, the terminal output as snapshots, and bad input refused before anything is
//! written.

mod common;

use common::{neoprobe, path, read_npy};

use neoprobe::kernels::Variant;
use neoprobe::model::ModelDir;
use serde_json::Value;
use std::path::{Path, PathBuf};

const TINY: &str = "fixtures/tiny-neo";
/// A word of two tokens on the fixture model's GPT-2 tokenizer ("prom", "ote").
const WORD: &str = "promote";
const NEURON: usize = 37;
const LAYER: usize = 8;

/// `extract` of `hook` for WORD alone with `variant`, pooled as asked: the rows.
fn extract(dir: &Path, variant: Variant, hook: &str, pool: &str) -> Vec<f32> {
    let words = dir.join("word.txt");
    std::fs::write(&words, format!("{WORD}\n")).unwrap();
    let out = dir.join(format!("{pool}-{}.npy", hook.replace('.', "_")));
    let variant = variant.to_string();
    let run = neoprobe(&[
        "extract",
        "--model-dir",
        TINY,
        "--words",
        path(&words),
        "--hook",
        hook,
        "--pool",
        pool,
        "--kernel-variant",
        &variant,
        "--out",
        path(&out),
    ]);
    assert!(run.ok, "extract failed: {}", run.stderr);
    read_npy(&out).1
}

fn f32s(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn f32_of(value: &Value) -> f32 {
    value.as_f64().unwrap() as f32
}

crate::test_each_variant!(explain_agrees_with_extract_the_kernel_and_exact_arithmetic);

/// Every number `explain --json` states, checked against an independent source: the hooks that
/// `extract` reads (the same bits), the weights in the model file, exact f64 arithmetic, the
/// variant table's geometry and the ids the kernel itself recorded.
fn explain_agrees_with_extract_the_kernel_and_exact_arithmetic(variant: Variant) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("explain");
    let (neuron, layer) = (NEURON.to_string(), LAYER.to_string());
    let run = neoprobe(&[
        "explain",
        "--model-dir",
        TINY,
        "--word",
        WORD,
        "--neuron",
        &neuron,
        "--layer",
        &layer,
        "--kernel-variant",
        &variant.to_string(),
        "--out-dir",
        path(&out),
        "--json",
    ]);
    assert!(run.ok, "explain failed: {}", run.stderr);
    let e: Value = serde_json::from_str(&run.stdout).unwrap();
    for name in ["explain.md", "explain.json", "contributions.png", "tiles.png"] {
        assert!(out.join(name).is_file(), "{name} not written");
    }
    assert_eq!(
        e,
        serde_json::from_str::<Value>(&std::fs::read_to_string(out.join("explain.json")).unwrap()).unwrap()
    );
    assert_eq!(
        (e["word"].as_str(), e["layer"].as_u64(), e["neuron"].as_u64()),
        (Some(WORD), Some(8), Some(37))
    );

    let model = ModelDir::open(Path::new(TINY)).unwrap();
    let config = model.config().unwrap();
    let (h, inter) = (config.hidden_size, config.intermediate_size);
    let weights = model.weights_of_blocks(&config, LAYER + 1).unwrap();
    let c_fc = &weights.blocks[LAYER].c_fc;
    let w_row = c_fc.weight.values()[NEURON * h..(NEURON + 1) * h].to_vec();
    let bias = c_fc.bias.values()[NEURON];

    let pre_rows = extract(dir.path(), variant, "blocks.8.mlp.hook_pre", "none");
    let post_rows = extract(dir.path(), variant, "blocks.8.mlp.hook_post", "none");
    let x_rows = extract(dir.path(), variant, "blocks.8.ln2.hook_normalized", "none");
    let mean_pre = extract(dir.path(), variant, "blocks.8.mlp.hook_pre", "mean");
    assert_eq!(
        f32_of(&e["mean_pre"]).to_bits(),
        mean_pre[NEURON].to_bits(),
        "mean_pre is not extract's value"
    );

    let tokens = e["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), pre_rows.len() / inter);
    assert_eq!(tokens.len(), 2, "{WORD} is two tokens on the fixture tokenizer");
    let cpu_driver = common::gpu().info.device_type == wgpu::DeviceType::Cpu;
    for (t, token) in tokens.iter().enumerate() {
        let at = |what: &str| format!("{variant} token {t}: {what}");
        for key in ["id", "text", "bias", "dot_f64", "pre_gpu", "pre_replayed", "post_gpu"] {
            assert!(!token[key].is_null(), "{}", at(&format!("no {key}")));
        }
        for key in ["mean", "variance", "inv_std"] {
            assert!(token["ln2"][key].is_number(), "{}", at(&format!("no ln2.{key}")));
        }
        for key in ["inner", "tanh", "value"] {
            assert!(token["gelu"][key].is_number(), "{}", at(&format!("no gelu.{key}")));
        }
        let d = &token["dispatch"];
        for key in ["variant", "grid", "workgroup_size", "workgroup", "invocation", "k_order"] {
            assert!(!d[key].is_null(), "{}", at(&format!("no dispatch.{key}")));
        }
        assert_eq!(d["variant"], variant.to_string());

        // x is the GPU's ln_2 output, w and the bias the model file's, the products exact.
        let (x, w, products) = (f32s(&token["x"]), f32s(&token["w"]), token["products"].as_array().unwrap());
        assert_eq!(x, x_rows[t * h..(t + 1) * h], "{}", at("x is not ln2.hook_normalized"));
        assert_eq!(w, w_row, "{}", at("w is not c_fc.weight's row"));
        assert_eq!(f32_of(&token["bias"]), bias, "{}", at("bias"));
        for k in 0..h {
            assert_eq!(products[k].as_f64().unwrap(), x[k] as f64 * w[k] as f64, "{}", at("product"));
        }
        let dot: f64 = products.iter().map(|p| p.as_f64().unwrap()).sum();
        assert!(
            (dot - token["dot_f64"].as_f64().unwrap()).abs() <= 1e-12 * dot.abs().max(1.0),
            "{}",
            at("dot_f64")
        );

        // pre_gpu is extract's value, and f32 rounding away from the exact sum.
        let pre_gpu = f32_of(&token["pre_gpu"]);
        assert_eq!(
            pre_gpu.to_bits(),
            pre_rows[t * inter + NEURON].to_bits(),
            "{}",
            at("pre_gpu is not extract's")
        );
        let magnitude: f64 =
            products.iter().map(|p| p.as_f64().unwrap().abs()).sum::<f64>() + bias.abs() as f64;
        let bound = 8.0 * f32::EPSILON as f64 * magnitude;
        assert!(
            ((dot + bias as f64) - pre_gpu as f64).abs() <= bound,
            "{}",
            at("Σ products + bias is not pre_gpu")
        );

        // The replay: bit for bit on a CPU driver (no contraction); on a GPU one of the replays
        // or f32 rounding away.
        let replayed = f32_of(&token["pre_replayed"]);
        if cpu_driver {
            assert_eq!(replayed.to_bits(), pre_gpu.to_bits(), "{}", at("the replay is not the GPU's value"));
            assert!(
                ["unfused", "both"].contains(&token["replay_matches"].as_str().unwrap()),
                "{}",
                at("replay_matches")
            );
        } else {
            assert!(
                (replayed - pre_gpu).abs() as f64 <= bound,
                "{}",
                at("the replay is far from the GPU's value")
            );
        }

        // The geometry: the table's, the kernel's own record, and the grid it lies in.
        let owner = variant.spec().linear_split.owner(t, NEURON, tokens.len(), h, inter);
        assert_eq!(d["workgroup"], serde_json::json!(owner.workgroup), "{}", at("workgroup"));
        assert_eq!(d["invocation"], serde_json::json!(owner.invocation), "{}", at("invocation"));
        assert_eq!(
            d["recorded_workgroup"],
            d["workgroup"],
            "{}",
            at("the kernel recorded another workgroup")
        );
        assert_eq!(
            d["recorded_invocation"],
            d["invocation"],
            "{}",
            at("the kernel recorded another invocation")
        );
        assert_eq!(d["grid"], serde_json::json!(variant.spec().linear_split.grid(tokens.len(), h, inter)));

        // gelu_new step by step, from the GPU's v, against the kernel's epilogue.
        let post = f32_of(&token["post_gpu"]);
        assert_eq!(
            post.to_bits(),
            post_rows[t * inter + NEURON].to_bits(),
            "{}",
            at("post_gpu is not extract's")
        );
        let value = token["gelu"]["value"].as_f64().unwrap();
        assert!(
            (value - post as f64).abs() <= 5.0 * f32::EPSILON as f64 * (pre_gpu as f64).abs() + 1e-30,
            "{}",
            at("gelu")
        );
    }
    let mean: f64 = tokens.iter().map(|t| t["pre_gpu"].as_f64().unwrap()).sum::<f64>() / tokens.len() as f64;
    assert!((mean - e["mean_pre"].as_f64().unwrap()).abs() <= 1e-7 * mean.abs().max(1e-3));
}

/// A tensor of the fixture model's file, read with the safetensors crate alone.
fn tensor(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(Path::new(TINY).join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor(name).unwrap();
    let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (view.shape().to_vec(), values)
}

/// Softmax of a row of logits, in f64.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// The downstream section against what `extract` reads and the weights in the model's file: the
/// write, TransformerLens' direct logit attribution through ln_f, the clean prediction, and the
/// KL of `extract --ablate`'s logits.
#[test]
fn explain_downstream_agrees_with_extract_and_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("explain");
    let run = neoprobe(&[
        "explain",
        "--model-dir",
        TINY,
        "--word",
        WORD,
        "--neuron",
        "37",
        "--out-dir",
        path(&out),
        "--json",
    ]);
    assert!(run.ok, "explain failed: {}", run.stderr);
    let e: Value = serde_json::from_str(&run.stdout).unwrap();
    let d = &e["downstream"];
    let tokens = e["tokens"].as_array().unwrap();
    let last = tokens.len() - 1;
    assert_eq!(d["row"], last);
    let post = f32_of(&tokens[last]["post_gpu"]);
    assert_eq!(f32_of(&d["post"]).to_bits(), post.to_bits());

    // The write: post × c_proj.weight[:, 37] (c_proj.weight is [hidden, d_mlp]).
    let (shape, c_proj) = tensor("transformer.h.8.mlp.c_proj.weight");
    let (h, inter) = (shape[0], shape[1]);
    let write: Vec<f64> = (0..h).map(|i| post as f64 * c_proj[i * inter + NEURON] as f64).collect();
    let norm = write.iter().map(|v| v * v).sum::<f64>().sqrt();
    let close = |a: f64, b: f64, what: &str| {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-12), "{what}: {a} vs {b}")
    };
    close(d["write_norm"].as_f64().unwrap(), norm, "write_norm");
    close(d["direction_norm"].as_f64().unwrap() * post.abs() as f64, norm, "direction_norm");

    // ln_f's scale from the clean residual stream at the last token, as extract reads it.
    let resid = extract(dir.path(), Variant::best_for(common::gpu()), "blocks.11.hook_resid_post", "none");
    let row = &resid[last * h..(last + 1) * h];
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
    let scale = (var + 1e-5).sqrt();
    close(d["ln_f_scale"].as_f64().unwrap(), scale, "ln_f_scale");

    // TransformerLens' attribution: γ ⊙ (write − mean) / scale, unembedded by the tied wte.
    let (_, gamma) = tensor("transformer.ln_f.weight");
    let (_, wte) = tensor("transformer.wte.weight");
    let centred_mean = write.iter().sum::<f64>() / h as f64;
    let x: Vec<f64> = (0..h).map(|i| gamma[i] as f64 * (write[i] - centred_mean) / scale).collect();
    let dla: Vec<f64> =
        wte.chunks_exact(h).map(|r| r.iter().zip(&x).map(|(&w, &v)| w as f64 * v).sum()).collect();
    let largest = dla.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut order: Vec<usize> = (0..dla.len()).collect();
    order.sort_by(|&a, &b| dla[b].total_cmp(&dla[a]));
    for (side, expected) in [("promoted", &order[..8]), ("suppressed", &order[order.len() - 8..])] {
        let listed: Vec<usize> =
            d[side].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap() as usize).collect();
        let mut expected = expected.to_vec();
        if side == "suppressed" {
            expected.reverse();
        }
        assert_eq!(listed, expected, "{side}");
        for t in d[side].as_array().unwrap() {
            let v = t["id"].as_u64().unwrap() as usize;
            assert!((t["value"].as_f64().unwrap() - dla[v]).abs() <= 1e-12 * largest, "{side} {v}");
        }
    }

    // The prediction and the ablation's KL, from extract's logits after the word.
    let clean = extract(dir.path(), Variant::best_for(common::gpu()), "logits", "last");
    let words = dir.path().join("word.txt");
    let ablated_file = dir.path().join("ablated.npy");
    let ablated_run = neoprobe(&[
        "extract",
        "--model-dir",
        TINY,
        "--words",
        path(&words),
        "--hook",
        "logits",
        "--pool",
        "last",
        "--ablate",
        "blocks.8.mlp.hook_post:37",
        "--out",
        path(&ablated_file),
    ]);
    assert!(ablated_run.ok, "{}", ablated_run.stderr);
    let ablated = read_npy(&ablated_file).1;
    let (p, q) = (softmax(&clean), softmax(&ablated));
    let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
    assert_eq!(d["prediction"]["id"], best);
    close(d["prediction"]["value"].as_f64().unwrap(), p[best], "prediction p");
    close(d["prediction_dla"].as_f64().unwrap(), dla[best], "prediction_dla");
    let kl: f64 = p.iter().zip(&q).map(|(a, b)| a * (a.ln() - b.ln())).sum();
    assert!(kl > 0.0);
    assert!(
        (d["ablation"]["kl"].as_f64().unwrap() - kl).abs() <= 1e-9 * kl,
        "kl {} vs {kl}",
        d["ablation"]["kl"]
    );
    assert_eq!(d["ablation"]["spec"], "--ablate blocks.8.mlp.hook_post:37");
    let moved = &d["ablation"]["moved"][0];
    let v = moved["id"].as_u64().unwrap() as usize;
    let largest_move = (0..p.len()).map(|v| (p[v] - q[v]).abs()).fold(0.0, f64::max);
    close((p[v] - q[v]).abs(), largest_move, "the token moved most");
}

/// Replaces the adapter's name, which differs between machines.
fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"(kernels · |on )[^\n]*\((Vulkan|Metal|Dx12|Gl)[^)]*\)", "$1[adapter]");
    settings
}

#[test]
fn explain_terminal_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("explain");
    let run = neoprobe(&[
        "explain",
        "--model-dir",
        TINY,
        "--word",
        WORD,
        "--neuron",
        "37",
        "--kernel-variant",
        "cpu",
        "--out-dir",
        path(&out),
    ]);
    assert!(run.ok, "{}", run.stderr);
    settings().bind(|| insta::assert_snapshot!("explain_terminal", run.stdout));
}

#[test]
fn explain_help_snapshot() {
    let run = neoprobe(&["explain", "--help"]);
    assert!(run.ok);
    insta::assert_snapshot!("explain_help", run.stdout);
}

#[test]
fn trace_help_snapshot() {
    let run = neoprobe(&["trace", "--help"]);
    assert!(run.ok);
    insta::assert_snapshot!("trace_help", run.stdout);
}

/// Each bad input: one line on stderr starting `error:`, a non-zero exit, and no output folder.
#[test]
fn explain_and_trace_refuse_bad_input_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = dir.path().join("out");
    let under_file = file.join("out");
    let missing_words = dir.path().join("missing.txt");
    let explain = |word: &str, neuron: &str, layer: &str, out: &Path| -> Vec<String> {
        [
            "explain",
            "--model-dir",
            TINY,
            "--word",
            word,
            "--neuron",
            neuron,
            "--layer",
            layer,
            "--out-dir",
            path(out),
        ]
        .map(String::from)
        .to_vec()
    };
    let cases: Vec<(Vec<String>, &Path, &str)> = vec![
        (explain(WORD, "256", "8", &out), &out, "--neuron 256 is out of range"),
        (explain(WORD, "0", "12", &out), &out, "--layer 12 is out of range"),
        (explain("", "0", "8", &out), &out, "--word is empty"),
        (explain("  ", "0", "8", &out), &out, "--word is empty"),
        (explain(WORD, "0", "8", &under_file), &under_file, "is a file, not a folder"),
        (
            ["trace", "--model-dir", TINY, "--words", path(&missing_words), "--out-dir", path(&out)]
                .map(String::from)
                .to_vec(),
            &out,
            "missing.txt",
        ),
        (
            ["trace", "--model-dir", TINY, "--hook", "blocks.99.mlp.hook_pre", "--out-dir", path(&out)]
                .map(String::from)
                .to_vec(),
            &out,
            "names block 99",
        ),
    ];
    for (args, out, expect) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = neoprobe(&args);
        assert!(!run.ok, "{args:?} succeeded");
        let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one line: {}", run.stderr);
        assert!(lines[0].starts_with("error: ") && lines[0].contains(expect), "{args:?}: {}", lines[0]);
        assert!(!out.exists(), "{args:?} left {}", out.display());
        assert!(!run.stderr.contains("panicked"));
    }
    // A folder that holds files is refused without --force, and left as it was.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let run = neoprobe(&explain(WORD, "0", "8", &out).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!run.ok && run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

/// The trace of the challenge's forward on the fixture model: the JSON contract, one dispatch per
/// kernel call in the forward's order, exact FLOP counts, times that add up.
#[test]
fn trace_lists_every_dispatch_of_the_forward() {
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("trace");
    let run = neoprobe(&["trace", "--model-dir", TINY, "--out-dir", path(&out), "--json"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(out.join("trace.png").is_file() && out.join("trace.json").is_file());
    let r: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(r["adapter"].is_string() && r["variant"].is_string());
    let dispatches = r["dispatches"].as_array().unwrap();
    // embed, then 7 kernels for each of blocks 0..7, then block 8 up to c_fc (6).
    assert_eq!(dispatches.len(), 1 + 8 * 7 + 6);
    for d in dispatches {
        for key in ["module", "kernel", "grid", "workgroup_size", "flops", "bytes", "seconds"] {
            assert!(!d[key].is_null(), "no {key} in {d}");
        }
        assert!(d["seconds"].as_f64().unwrap() > 0.0, "{d}");
        assert!(d["workgroup_size"].as_u64().unwrap() > 0, "{d}");
    }
    let modules: Vec<&str> = dispatches.iter().map(|d| d["module"].as_str().unwrap()).collect();
    assert_eq!(modules[0], "wte+wpe");
    assert_eq!(
        &modules[57..],
        [
            "h.8.ln_1",
            "h.8.attn.q_proj+k_proj+v_proj",
            "h.8.attn",
            "h.8.attn.out_proj",
            "h.8.ln_2",
            "h.8.mlp.c_fc"
        ]
    );
    let c_fc = dispatches.last().unwrap();
    // The 200 challenge words are 279 tokens; the fixture model is 64 wide with 256 neurons.
    assert_eq!(r["n_tokens"], 279);
    assert_eq!(c_fc["flops"].as_f64().unwrap(), (2 * 279 * 64 * 256) as f64);
    let total: f64 = dispatches.iter().map(|d| d["seconds"].as_f64().unwrap()).sum();
    assert!((total - r["total_seconds"].as_f64().unwrap()).abs() <= 1e-9 * total);
    let shares: f64 = dispatches.iter().map(|d| d["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-9);
}

#[test]
fn trace_terminal_snapshot_of_a_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trace");
    let run = neoprobe(&[
        "trace",
        "--model-dir",
        TINY,
        "--text",
        "fixtures/text.txt",
        "--hook",
        "blocks.1.hook_resid_post",
        "--kernel-variant",
        "cpu",
        "--out-dir",
        path(&out),
    ]);
    assert!(run.ok, "{}", run.stderr);
    let mut settings = settings();
    // Times differ from run to run: the figures that come from them are replaced, and the
    // slowest five (whose order they decide) left out.
    settings.add_filter(r" +[0-9.e+-]+ ms +[0-9.e+-]+% +[0-9.e+-]+\n", " [time] [share] [GFLOP/s]\n");
    settings.add_filter(r"[0-9.e+-]+ ms", "[t] ms");
    settings.add_filter(r"[0-9.e+-]+%", "[s]%");
    settings.add_filter(r"[0-9.e+-]+ GFLOP/s", "[r] GFLOP/s");
    settings.add_filter(r"(?s)slowest:\n.*?\n\n", "slowest: [by time]\n\n");
    settings.add_filter(r"times: [a-zA-Z ]+\)", "times: [timing])");
    settings.bind(|| insta::assert_snapshot!("trace_terminal", run.stdout));
}
