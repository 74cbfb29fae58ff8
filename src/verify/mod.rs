//! `neoprobe verify`: fidelity on the user's own adapter. For every kernel variant the adapter
//! runs (or those named): each kernel against the f64 reference at the model's real shapes and
//! weights; the whole forward on the challenge's words and on a text longer than the local window
//! against the f64 reference forward of the same weights, at every hook of a global and a local
//! block and at the logits; and, for the pinned GPT-Neo 125M, the loss on a published anchor.

pub mod bounds;

use crate::engine::{Engine, LoadedModel, ModelSource};
use crate::gpu::{Gpu, Recorder};
use crate::hub::{FetchOptions, DEFAULT_MODEL, DEFAULT_REVISION};
use crate::kernels::{AttentionShape, Epilogue, Faults, GpuLayerNorm, Kernels, Rows, Variant};
use crate::model::{
    next_token_loss, Action, AttentionKind, Batch, GptNeoConfig, GptNeoWeights, Hook, HookPlan, HookPoint,
    Intervention, Interventions, ModelDir,
};
use crate::notes::Notes;
use crate::reference;
use crate::text::sig;
use crate::tokenize::{Tokenizer, WordSource};
use anyhow::Result;
use bounds::*;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The text longer than GPT-Neo's local window that the forward is checked on.
pub const VERIFY_TEXT: &str = include_str!("../../data/verify_text.txt");

/// TransformerLens' acceptance tests: the mean next-token loss of EleutherAI/gpt-neo-125m on
/// "Hello world!" with `<|endoftext|>` prepended.
pub const HELLO_WORLD_LOSS: f64 = 4.900552272796631;
/// Its tolerance: the published value passed through TransformerLens' own weight processing,
/// which moves the loss by float rounding, and the anchor test is one-sided upstream.
pub const HELLO_WORLD_TOLERANCE: f64 = 1e-4;

/// Forward hooks may be this many `ε · max|reference|` from the f64 reference forward: a factor
/// above what every variant measured on GPT-Neo-125M-shaped models (docs/fidelity.md), and far
/// below what a wrong window, scaling or activation moves them by.
pub const FORWARD_BOUND: f64 = 256.0;

/// Tokens of the words and the text whose logits are compared (all of them for short inputs).
const LOGIT_ROWS: usize = 24;
/// Tokens per linear, layernorm check; tokens of the long attention check's first sequence.
const KERNEL_TOKENS: usize = 37;
/// Words of the challenge run again with interventions.
const INTERVENTION_WORDS: usize = 24;
const ATTENTION_TOKENS: usize = 300;

#[derive(Clone, Debug)]
pub struct VerifyArgs {
    pub model: ModelSource,
    pub fetch: FetchOptions,
    /// Variants to check; empty: every one the adapter runs.
    pub variants: Vec<Variant>,
    /// Deliberate errors compiled into the kernels (to show the checks fail).
    pub faults: Faults,
}

/// What `verify --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub adapter: String,
    pub model: String,
    pub commit: Option<String>,
    pub checks: Vec<Check>,
    /// Every check that ran passed, and every variant asked for ran.
    pub pass: bool,
}

/// One check: the largest error against its tolerance (both absolute, at the element that came
/// closest to its tolerance), or why it did not run.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub variant: Option<String>,
    pub max_abs_error: Option<f64>,
    pub tolerance: Option<f64>,
    /// `None`: not run (`note` says why); never counted as passed.
    pub pass: Option<bool>,
    pub note: Option<String>,
}

impl Check {
    /// From per-element errors and tolerances: the element with the largest error ÷ tolerance.
    fn measured(name: String, variant: Variant, errors: impl IntoIterator<Item = (f64, f64)>) -> Check {
        let mut worst: Option<(f64, f64)> = None;
        for (error, tolerance) in errors {
            let error = if error.is_nan() { f64::INFINITY } else { error };
            if worst.is_none_or(|(e, t)| error / tolerance > e / t) {
                worst = Some((error, tolerance));
            }
        }
        let (error, tolerance) = worst.unwrap_or((0.0, 0.0));
        Check {
            name,
            variant: Some(variant.to_string()),
            max_abs_error: Some(error),
            tolerance: Some(tolerance),
            pass: Some(error <= tolerance),
            note: None,
        }
    }

    fn not_run(name: String, variant: Option<Variant>, why: String) -> Check {
        Check {
            name,
            variant: variant.map(|v| v.to_string()),
            max_abs_error: None,
            tolerance: None,
            pass: None,
            note: Some(why),
        }
    }
}

/// The blocks whose every hook the forward checks: the challenge's block 8 if the model has it,
/// and a local and a global block at or below it.
fn checked_blocks(config: &GptNeoConfig) -> Vec<usize> {
    let top = config.num_layers.min(9);
    let last_of = |kind| (0..top).rev().find(|&l| config.attention_layers[l] == kind);
    let mut blocks: Vec<usize> =
        [last_of(AttentionKind::Global), last_of(AttentionKind::Local)].into_iter().flatten().collect();
    blocks.sort();
    blocks
}

/// An input the forward is checked on, with the f64 reference's values at the checked hooks.
struct Input {
    name: &'static str,
    batch: Batch,
    /// Applied on the way, by the reference and the GPU alike.
    interventions: Interventions,
    reference: HashMap<Hook, Vec<f32>>,
    /// The rows whose logits are compared, and the reference's logits there.
    logit_rows: Vec<usize>,
    logits: Vec<f32>,
}

pub fn verify(args: &VerifyArgs, notes: &dyn Notes) -> Result<VerifyReport> {
    let resolved = args.model.resolve(&args.fetch, notes)?;
    let mut checked = Vec::new();
    let (model, _) = LoadedModel::load(&ModelDir::open(&resolved.dir)?, |config| {
        checked = checked_blocks(config);
        HookPlan::new(&[Hook::LnFinal])
    })?;
    let config = &model.config;
    let mut hooks: Vec<Hook> =
        checked.iter().flat_map(|&l| HookPoint::ALL.map(move |p| Hook::block(l, p))).collect();
    hooks.push(Hook::LnFinal);
    let reference_plan = HookPlan::new(&hooks)?;
    hooks.push(Hook::Logits);
    let gpu_plan = HookPlan::new(&hooks)?;

    notes.step("the f64 reference forward on the challenge's words and the built-in text");
    let mut words = WordSource::verbs().read()?;
    words.extend(WordSource::nouns().read()?);
    let word_ids =
        words.iter().map(|w| model.tokenizer.encode_word(&w.word, false)).collect::<Result<Vec<_>>>()?;
    let mut text_ids = model.tokenizer.encode(VERIFY_TEXT)?;
    text_ids.truncate(config.max_position_embeddings);
    // A few words again with interventions on the checked blocks: the kernel that applies them
    // against the reference's host arithmetic, and everything downstream of them.
    let some_words = word_ids[..word_ids.len().min(INTERVENTION_WORDS)].to_vec();
    let lengths: Vec<usize> = some_words.iter().map(Vec::len).collect();
    let interventions = verify_interventions(config, &checked).for_run(&lengths)?;
    let inputs = [
        ("words", word_ids, Interventions::default()),
        ("text", vec![text_ids], Interventions::default()),
        ("words with interventions", some_words, interventions),
    ]
    .into_iter()
    .map(|(name, sequences, interventions)| {
        reference_input(name, &sequences, &model.weights, &reference_plan, interventions)
    })
    .collect::<Result<Vec<_>>>()?;

    let gpu = Gpu::new()?;
    let adapter = gpu.adapter_name();
    let named = !args.variants.is_empty();
    let variants = if named { args.variants.clone() } else { Variant::ALL.to_vec() };
    let mut checks = Vec::new();
    let mut all_ran = true;
    for variant in variants {
        if let Some(why) = variant.unsupported_on(&gpu) {
            all_ran &= !named;
            checks.push(Check::not_run(format!("{variant}: every check"), Some(variant), why));
            continue;
        }
        notes.step(&format!("{variant}: kernels at the model's shapes"));
        let engine = Engine::with_faults(&model.weights, Some(variant), model.load_time, args.faults)?;
        checks.extend(kernel_checks(&engine.gpu, &engine.kernels, &model.weights)?);
        for input in &inputs {
            notes.step(&format!("{variant}: the forward on the {}", input.name));
            let plan = gpu_plan.clone().with_interventions(input.interventions.clone());
            let (acts, _) = engine.forward(&input.batch, &plan, false)?;
            for &hook in &hooks[..hooks.len() - 1] {
                let (got, want) = (acts.get(hook).expect("every planned hook"), &input.reference[&hook]);
                let tolerance =
                    FORWARD_BOUND * EPS * want.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
                let errors = got.iter().zip(want).map(|(&g, &w)| ((g as f64 - w as f64).abs(), tolerance));
                checks.push(Check::measured(format!("{} {hook}", input.name), variant, errors));
            }
            let vocab = config.vocab_size;
            let logits = acts.get(Hook::Logits).expect("the logits were planned");
            let got: Vec<f32> =
                input.logit_rows.iter().flat_map(|&t| &logits[t * vocab..(t + 1) * vocab]).copied().collect();
            let tolerance =
                FORWARD_BOUND * EPS * input.logits.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
            let errors =
                got.iter().zip(&input.logits).map(|(&g, &w)| ((g as f64 - w as f64).abs(), tolerance));
            checks.push(Check::measured(format!("{} logits", input.name), variant, errors));
        }
        checks.push(hello_world_check(
            &engine,
            &model.tokenizer,
            &resolved.label,
            resolved.commit.as_deref(),
            variant,
        )?);
    }
    let pass = all_ran && checks.iter().all(|c| c.pass != Some(false));
    Ok(VerifyReport { adapter, model: resolved.label, commit: resolved.commit, checks, pass })
}

/// The interventions checked: a head of block 0 zeroed, a vector added at each word's last
/// position of the first checked block's `hook_resid_mid`, ten neurons of the last checked block's
/// `mlp.hook_post` negated.
fn verify_interventions(config: &GptNeoConfig, checked: &[usize]) -> Interventions {
    let (first, last) = (checked.first().copied().unwrap_or(0), checked.last().copied().unwrap_or(0));
    let (d, h) = (config.head_dim(), config.hidden_size);
    let neurons = config.intermediate_size.min(10);
    Interventions::new(vec![
        Intervention {
            hook: Hook::block(0, HookPoint::AttnZ),
            columns: Some((0..d).collect()),
            positions: None,
            per_sequence: None,
            sequences: None,
            action: Action::Zero,
            spec: "--ablate blocks.0.attn.hook_z:head=0".to_string(),
        },
        Intervention {
            hook: Hook::block(first, HookPoint::ResidMid),
            columns: None,
            positions: Some(vec![-1]),
            per_sequence: None,
            sequences: None,
            action: Action::Add { vector: (0..h).map(|c| (c as f32 * 0.7).sin()).collect(), scale: 0.5 },
            spec: format!("--steer blocks.{first}.hook_resid_mid@-1=sin(0.7·c)*0.5"),
        },
        Intervention {
            hook: Hook::block(last, HookPoint::MlpPost),
            columns: Some((0..neurons).collect()),
            positions: None,
            per_sequence: None,
            sequences: None,
            action: Action::Scale(-1.0),
            spec: format!("--scale blocks.{last}.mlp.hook_post:0..{neurons}=-1"),
        },
    ])
}

/// The reference forward of `sequences` at the hooks of `plan`, and the logits of a spread of
/// rows (computed from the reference's ln_f output: the full `[tokens, vocab]` in f64 would
/// take far longer than the rest).
fn reference_input(
    name: &'static str,
    sequences: &[Vec<u32>],
    weights: &GptNeoWeights,
    plan: &HookPlan,
    interventions: Interventions,
) -> Result<Input> {
    let config = &weights.config;
    let batch = Batch::pack(sequences, config.max_position_embeddings)?;
    let reference =
        reference::forward(weights, &batch, &plan.clone().with_interventions(interventions.clone()));
    let n = batch.n_tokens();
    let logit_rows: Vec<usize> = if n <= LOGIT_ROWS {
        (0..n).collect()
    } else {
        (0..LOGIT_ROWS).map(|i| i * (n - 1) / (LOGIT_ROWS - 1)).collect()
    };
    let h = config.hidden_size;
    let normed = &reference[&Hook::LnFinal];
    let rows: Vec<f32> = logit_rows.iter().flat_map(|&t| &normed[t * h..(t + 1) * h]).copied().collect();
    let logits = reference::linear(&rows, &weights.wte.values(), &vec![0.0; config.vocab_size], h);
    Ok(Input { name, batch, interventions, reference, logit_rows, logits })
}

/// Each kernel of `kernels` against the reference at the model's shapes, with block 0's weights
/// and seeded random inputs.
fn kernel_checks(gpu: &Gpu, k: &Kernels, weights: &GptNeoWeights) -> Result<Vec<Check>> {
    let config = &weights.config;
    let variant = k.variant;
    let (h, inter) = (config.hidden_size, config.intermediate_size);
    let block = &weights.blocks[0];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261203);
    let mut normals = |n: usize, mean: f32, sigma: f32| -> Vec<f32> {
        use rand::Rng;
        (0..n)
            .map(|_| {
                let (u1, u2): (f64, f64) = (rng.random(), rng.random());
                mean + sigma * ((-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect()
    };
    let mut checks = Vec::new();
    let t = KERNEL_TOKENS;
    let scratch = k.scratch(gpu, ATTENTION_TOKENS + 3, &[h, 3 * h, inter])?;
    let rows = Rows { n_tokens: t, scratch: &scratch };

    // Linear layers, with the epilogue each runs in the forward.
    let zero = vec![0.0f32; 3 * h];
    let qkv_w: Vec<f32> =
        [&block.q_proj, &block.k_proj, &block.v_proj].iter().flat_map(|w| w.to_vec()).collect();
    /// A linear layer of block 0: name, weight, bias, inputs, whether GELU follows it.
    type Layer<'a> = (&'a str, Vec<f32>, Vec<f32>, usize, bool);
    let layers: [Layer; 4] = [
        ("q_proj+k_proj+v_proj", qkv_w, zero, h, false),
        ("out_proj", block.out_proj.weight.to_vec(), block.out_proj.bias.to_vec(), h, false),
        ("c_fc", block.c_fc.weight.to_vec(), block.c_fc.bias.to_vec(), h, true),
        ("c_proj", block.c_proj.weight.to_vec(), block.c_proj.bias.to_vec(), inter, false),
    ];
    for (name, w, b, n_in, gelu) in layers {
        let n_out = b.len();
        let layer =
            k.upload_linear(gpu, name, &[bytemuck::cast_slice(&w)], Some(bytemuck::cast_slice(&b)), n_in)?;
        let x = normals(t * n_in, 0.0, 1.0);
        let x_buf = gpu.upload("x", bytemuck::cast_slice(&x))?;
        let (y, v) = (gpu.storage("y", t * n_out)?, gpu.storage("v", t * n_out)?);
        let mut rec = Recorder::new(gpu, false);
        let epilogue = if gelu { Epilogue::Gelu { pre: Some(&v) } } else { Epilogue::Bias };
        k.linear(&mut rec, &layer, &x_buf, &y, epilogue, rows)?;
        rec.finish()?;
        let got = gpu.read(if gelu { &v } else { &y }, t * n_out)?;
        let want = reference::linear(&x, &w, &b, n_in);
        let errors = (0..t * n_out).map(|i| {
            let (row, n) = (i / n_out, i % n_out);
            let scale = linear_scale(&x[row * n_in..(row + 1) * n_in], &w[n * n_in..(n + 1) * n_in], b[n]);
            ((got[i] as f64 - want[i] as f64).abs(), LINEAR_BOUND * scale)
        });
        checks.push(Check::measured(format!("kernel linear {name}"), variant, errors));
        if gelu {
            let post = gpu.read(&y, t * n_out)?;
            let want = reference::gelu_new(&got);
            let errors = (0..t * n_out)
                .map(|i| ((post[i] as f64 - want[i] as f64).abs(), GELU_BOUND * gelu_scale(got[i])));
            checks.push(Check::measured("kernel gelu_new (c_fc's epilogue)".into(), variant, errors));
        }
    }

    // Attention, global and local, over a sequence longer than the window packed with short ones.
    let (n_heads, head_dim) = (config.num_heads, config.head_dim());
    let long = ATTENTION_TOKENS.min(config.max_position_embeddings);
    let batch = Batch::pack(&[vec![0; long], vec![0; 1], vec![0; 2]], config.max_position_embeddings)?;
    let n = batch.n_tokens();
    let sigma = (4.0 / (head_dim as f64).sqrt()).sqrt() as f32;
    let mut qkv = Vec::with_capacity(n * 3 * h);
    for _ in 0..n {
        qkv.extend(normals(2 * h, 0.0, sigma));
        qkv.extend(normals(h, 0.0, 1.0));
    }
    for (kind, window) in [("global", None), ("local", Some(config.window_size))] {
        let shape = AttentionShape { n_tokens: n, n_heads, head_dim, window };
        let (qkv_buf, starts) = (
            gpu.upload("qkv", bytemuck::cast_slice(&qkv))?,
            gpu.upload("seq_start", bytemuck::cast_slice(&batch.seq_start))?,
        );
        let z = gpu.storage("z", n * h)?;
        let mut rec = Recorder::new(gpu, false);
        k.attention(&mut rec, &qkv_buf, &starts, &z, shape, &scratch)?;
        rec.finish()?;
        let got = gpu.read(&z, n * h)?;
        let want = reference::attention(&qkv, &batch.seq_start, n_heads, head_dim, window);
        let row = |t: usize| &qkv[t * 3 * h..(t + 1) * 3 * h];
        let mut errors = Vec::with_capacity(n * h);
        for q in 0..n {
            let first = window.map_or(batch.seq_start[q] as usize, |w| {
                (batch.seq_start[q] as usize).max((q + 1).saturating_sub(w))
            });
            for head in 0..n_heads {
                let cols = head * head_dim..(head + 1) * head_dim;
                let keys: Vec<&[f32]> = (first..=q).map(|j| &row(j)[h + cols.start..h + cols.end]).collect();
                let values: Vec<&[f32]> =
                    (first..=q).map(|j| &row(j)[2 * h + cols.start..2 * h + cols.end]).collect();
                let scale = attention_scale(&row(q)[cols.clone()], &keys, &values);
                for c in cols {
                    errors.push((
                        (got[q * h + c] as f64 - want[q * h + c] as f64).abs(),
                        ATTENTION_BOUND * scale,
                    ));
                }
            }
        }
        checks.push(Check::measured(format!("kernel attention, {kind}"), variant, errors));
    }

    // LayerNorm with ln_1's weights, on rows far from zero mean.
    let (gamma, beta) = (block.ln_1.weight.to_vec(), block.ln_1.bias.to_vec());
    let ln = GpuLayerNorm::upload(
        gpu,
        "ln_1",
        bytemuck::cast_slice(&gamma),
        bytemuck::cast_slice(&beta),
        config.layer_norm_epsilon,
    )?;
    let x = normals(t * h, 100.0, 1.0);
    let (x_buf, y) = (gpu.upload("x", bytemuck::cast_slice(&x))?, gpu.storage("y", t * h)?);
    let mut rec = Recorder::new(gpu, false);
    k.layernorm(&mut rec, &ln, &x_buf, &y, rows);
    rec.finish()?;
    let got = gpu.read(&y, t * h)?;
    let want = reference::layernorm(&x, &gamma, &beta, config.layer_norm_epsilon);
    let errors = (0..t * h).map(|i| {
        let scale = layernorm_scale(
            &x[i / h * h..(i / h + 1) * h],
            gamma[i % h],
            beta[i % h],
            config.layer_norm_epsilon,
        );
        ((got[i] as f64 - want[i] as f64).abs(), LAYERNORM_BOUND * scale)
    });
    checks.push(Check::measured("kernel layernorm (ln_1's weights)".into(), variant, errors));
    Ok(checks)
}

/// The loss on "Hello world!" after `<|endoftext|>` against TransformerLens' published value, for
/// the pinned EleutherAI/gpt-neo-125m; not run for any other model.
fn hello_world_check(
    engine: &Engine,
    tokenizer: &Tokenizer,
    model: &str,
    commit: Option<&str>,
    variant: Variant,
) -> Result<Check> {
    let name = "loss on <|endoftext|>Hello world!".to_string();
    if model != DEFAULT_MODEL || commit != Some(DEFAULT_REVISION) {
        let why = format!("the published loss is for {DEFAULT_MODEL} at {DEFAULT_REVISION}");
        return Ok(Check::not_run(name, Some(variant), why));
    }
    let mut ids = vec![50256];
    ids.extend(tokenizer.encode("Hello world!")?);
    let batch = Batch::pack(std::slice::from_ref(&ids), engine.model.config.max_position_embeddings)?;
    let (acts, _) = engine.forward(&batch, &HookPlan::new(&[Hook::Logits])?, false)?;
    let logits = acts.get(Hook::Logits).expect("the logits were planned");
    let loss = next_token_loss(logits, engine.model.config.vocab_size, &ids).expect("more than one token");
    Ok(Check::measured(name, variant, [((loss - HELLO_WORLD_LOSS).abs(), HELLO_WORLD_TOLERANCE)]))
}

/// The report as one table.
pub fn render(r: &VerifyReport) -> String {
    let mut out = String::new();
    let commit = r.commit.as_deref().map(|c| format!(" @ {}", &c[..c.len().min(7)])).unwrap_or_default();
    let _ = writeln!(out, "neoprobe verify on {} · model {}{commit}", r.adapter, r.model);
    let _ =
        writeln!(out, "\n{:<8} {:<52} {:>12} {:>12}  result", "variant", "check", "max error", "tolerance");
    for c in &r.checks {
        let value = |v: Option<f64>| v.map_or("—".to_string(), |v| sig(v, 3));
        let result = match (c.pass, &c.note) {
            (Some(true), _) => "pass".to_string(),
            (Some(false), _) => "FAIL".to_string(),
            (None, Some(note)) => format!("not run: {note}"),
            (None, None) => "not run".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<8} {:<52} {:>12} {:>12}  {result}",
            c.variant.as_deref().unwrap_or(""),
            c.name,
            value(c.max_abs_error),
            value(c.tolerance)
        );
    }
    let (passed, failed) = (
        r.checks.iter().filter(|c| c.pass == Some(true)).count(),
        r.checks.iter().filter(|c| c.pass == Some(false)).count(),
    );
    let not_run = r.checks.len() - passed - failed;
    let _ = writeln!(
        out,
        "\n{passed} passed, {failed} failed, {not_run} not run: {}",
        if r.pass { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(
        out,
        "tolerances: kernels {LINEAR_BOUND} (linear), {ATTENTION_BOUND} (attention), {LAYERNORM_BOUND} (layernorm), {GELU_BOUND} (gelu_new) \
         rounding-error scales of their inputs; forward hooks and logits {FORWARD_BOUND} × ε × max|reference|; \
         the loss {HELLO_WORLD_TOLERANCE} (docs/fidelity.md)"
    );
    out
}
