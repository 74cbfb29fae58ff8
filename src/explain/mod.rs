//! `neoprobe explain`: one neuron of one block's MLP expansion (c_fc) for one word, followed from
//! the weights, through the workgroup and invocation that computed it, to the number in the
//! output — with every step recomputed on the host and set beside the GPU's own value.
//!
//! The GPU values come from the forward `extract` and `challenge` run (hooks `resid_mid`,
//! `ln2.hook_normalized`, `mlp.hook_pre`, `mlp.hook_post` of the block), the geometry from the
//! variant table (`LinearSplit::owner`) checked against the ids the kernel itself records, and
//! the k order from `KOrder`, replayed in f32. After GELU, `downstream` follows the neuron's
//! write to the logits: the same forward runs on to them, and a second one, resumed at the block,
//! has the neuron ablated.

pub mod downstream;
mod figures;
mod render;

pub use render::{markdown, terminal};

use crate::engine::{Engine, LoadedModel, ModelSource};
use crate::gpu::Recorder;
use crate::hub::FetchOptions;
use crate::kernels::{KOrder, Rows, Variant};
use crate::model::{Action, Batch, Hook, HookPlan, HookPoint, Intervention, Interventions, ModelDir, Resume};
use crate::notes::Notes;
use crate::out_dir::{check_out_dir, Staging};
use crate::output;
use crate::pool::{pool, Pool};
use anyhow::{bail, Context, Result};
use downstream::{downstream, Downstream, Runs};
use serde::Serialize;
use std::path::PathBuf;

/// The files `explain` writes into its output folder.
pub const EXPLAIN_MD: &str = "explain.md";
pub const EXPLAIN_JSON: &str = "explain.json";
pub const CONTRIBUTIONS_PNG: &str = "contributions.png";
pub const TILES_PNG: &str = "tiles.png";
pub const OUTPUT_FILES: [&str; 4] = [EXPLAIN_MD, EXPLAIN_JSON, CONTRIBUTIONS_PNG, TILES_PNG];

/// Contributions listed on each side (largest positive, largest negative).
const TOP_CONTRIBUTIONS: usize = 8;
/// Values of k between two checkpoints of a sequential running sum.
const CHECKPOINT_EVERY: usize = 64;

/// Everything `neoprobe explain` is asked to do.
#[derive(Clone, Debug)]
pub struct ExplainArgs {
    pub model: ModelSource,
    pub fetch: FetchOptions,
    pub word: String,
    pub neuron: usize,
    pub layer: usize,
    pub prefix_space: bool,
    pub variant: Option<Variant>,
    pub out_dir: PathBuf,
    pub force: bool,
}

/// One neuron for one word: what `--json` prints and `explain.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub word: String,
    pub layer: usize,
    pub neuron: usize,
    /// The challenge's value: `mlp.hook_pre` of this neuron averaged over the word's tokens.
    pub mean_pre: f32,
    pub model: String,
    pub adapter: String,
    pub variant: String,
    /// c_fc's inputs and outputs.
    pub n_in: usize,
    pub n_out: usize,
    pub prefix_space: bool,
    pub tokens: Vec<TokenExplanation>,
    /// After GELU: the write into the residual stream, its direct effect on the logits and the
    /// effect of ablating the neuron, at the word's last token.
    pub downstream: Downstream,
}

/// One token of the word at the neuron.
#[derive(Clone, Debug, Serialize)]
pub struct TokenExplanation {
    pub id: u32,
    pub text: String,
    /// Its row in the batch (the word alone: its position).
    pub row: usize,
    pub ln2: Ln2Step,
    /// ln_2's output, c_fc's input (the GPU's `ln2.hook_normalized`).
    pub x: Vec<f32>,
    /// `c_fc.weight[neuron, :]`.
    pub w: Vec<f32>,
    pub bias: f32,
    /// `x[k] · w[k]`, exact (a product of two f32 values fits an f64).
    pub products: Vec<f64>,
    /// Σ products, in f64; `dot_f64 + bias` is the exact value f32 arithmetic approximates.
    pub dot_f64: f64,
    /// The GPU's value (`mlp.hook_pre`).
    pub pre_gpu: f32,
    /// The kernel's k order replayed in f32, each product rounded before it is added.
    pub pre_replayed: f32,
    /// The same with each multiply-add rounded once (a GPU that contracts them to FMA).
    pub pre_replayed_fused: f32,
    /// Which replay gives the GPU's bits: "unfused", "fused", "both" or "neither".
    pub replay_matches: String,
    pub top_positive: Vec<Contribution>,
    pub top_negative: Vec<Contribution>,
    /// The f32 running sum in the kernel's order, at checkpoints.
    pub running_sum: Vec<Checkpoint>,
    /// The GPU's `mlp.hook_post`: gelu_new(pre_gpu), as the kernel's epilogue computed it.
    pub post_gpu: f32,
    /// gelu_new(pre_gpu) step by step, in f64.
    pub gelu: GeluSteps,
    pub dispatch: Dispatch,
}

/// ln_2's statistics of the token's residual stream (`resid_mid`), in f64.
#[derive(Clone, Debug, Serialize)]
pub struct Ln2Step {
    pub mean: f64,
    pub variance: f64,
    /// 1 / √(variance + eps).
    pub inv_std: f64,
    pub eps: f64,
}

/// One term of the dot product.
#[derive(Clone, Debug, Serialize)]
pub struct Contribution {
    pub k: usize,
    pub x: f32,
    pub w: f32,
    pub product: f64,
}

/// The running f32 sum after part of the k order.
#[derive(Clone, Debug, Serialize)]
pub struct Checkpoint {
    /// Which products are in the sum so far.
    pub after: String,
    pub sum: f32,
}

/// gelu_new(v) = 0.5 · v · (1 + tanh(inner)), inner = √(2/π) · (v + 0.044715 · v³).
#[derive(Clone, Debug, Serialize)]
pub struct GeluSteps {
    pub inner: f64,
    pub tanh: f64,
    pub value: f64,
}

/// How the selected kernel variant computed the output.
#[derive(Clone, Debug, Serialize)]
pub struct Dispatch {
    pub variant: String,
    /// The kernel's file in `shaders/`.
    pub kernel: String,
    pub grid: [u32; 3],
    pub workgroup_size: usize,
    /// The workgroup (x, y) that owns the output, and the invocation that stores it.
    pub workgroup: [u32; 2],
    pub invocation: u32,
    /// The invocations whose partial sums make it (itself unless the sum is split).
    pub partial_sums: Vec<u32>,
    /// What the kernel itself recorded storing this output (RECORD_OWNER): equal to the above.
    pub recorded_workgroup: [u32; 2],
    pub recorded_invocation: u32,
    /// The workgroup's tile of the output, (tokens, outputs).
    pub tile: [usize; 2],
    /// What the workgroup reads of x and the weights.
    pub reads: String,
    /// The order of summation, in words and as data.
    pub k_order: String,
    pub order: KOrder,
}

/// What a run of `explain` produced.
pub struct ExplainOutcome {
    pub explanation: Explanation,
    pub files: Vec<PathBuf>,
}

/// Explains `args.neuron` of block `args.layer` for `args.word`, writing the output folder.
pub fn explain(args: &ExplainArgs, notes: &dyn Notes) -> Result<ExplainOutcome> {
    if args.word.trim().is_empty() {
        bail!("--word is empty; give the word to explain (any UTF-8 text)");
    }
    check_out_dir(&args.out_dir, args.force, &OUTPUT_FILES, "explain's files")?;
    let resolved = args.model.resolve(&args.fetch, notes)?;
    let layer = args.layer;
    let at = |point| Hook::block(layer, point);
    let block_hooks = [
        HookPoint::ResidPre,
        HookPoint::ResidMid,
        HookPoint::Ln2Normalized,
        HookPoint::MlpPre,
        HookPoint::MlpPost,
    ];
    let (model, plan) = LoadedModel::load(&ModelDir::open(&resolved.dir)?, |config| {
        if layer >= config.num_layers {
            bail!(
                "--layer {layer} is out of range: the model has {} blocks; choose a layer from 0 to {}",
                config.num_layers,
                config.num_layers - 1
            );
        }
        if args.neuron >= config.intermediate_size {
            bail!(
                "--neuron {} is out of range: block {layer}'s MLP has {} neurons; choose one from 0 to {}",
                args.neuron,
                config.intermediate_size,
                config.intermediate_size - 1
            );
        }
        // The block's hooks, the residual stream entering ln_f, and the next-token logits.
        let mut hooks = block_hooks.map(at).to_vec();
        hooks.extend([Hook::block(config.num_layers - 1, HookPoint::ResidPost), Hook::Logits]);
        Ok(HookPlan::new(&hooks)?.with_last_token_logits())
    })?;
    let config = model.config.clone();
    let ids = model.tokenizer.encode_word(&args.word, args.prefix_space)?;
    let batch = Batch::pack(std::slice::from_ref(&ids), config.max_position_embeddings)?;
    let engine = Engine::new(&model.weights, args.variant, model.load_time)?;
    let variant = engine.kernels.variant;
    notes.step(&format!(
        "running {:?} on {} with the {variant} kernels",
        args.word,
        engine.gpu.adapter_name()
    ));
    let (mut acts, _) = engine.forward(&batch, &plan, false)?;
    let mut take = |point| acts.take(at(point)).context("the forward did not read back a hook explain needs");
    let (resid_mid, x_rows) = (take(HookPoint::ResidMid)?, take(HookPoint::Ln2Normalized)?);
    let (pre_rows, post_rows) = (take(HookPoint::MlpPre)?, take(HookPoint::MlpPost)?);
    let resid_pre = take(HookPoint::ResidPre)?;
    let last_block = Hook::block(config.num_layers - 1, HookPoint::ResidPost);
    let resid_final = acts.take(last_block).context("the forward did not read the last block's output")?;
    let clean_logits = acts.take(Hook::Logits).context("the forward did not read the logits")?;

    // The neuron zeroed on every token of the word, the model run on from its block.
    let ablated = HookPlan::new(&[Hook::Logits])?.with_last_token_logits().with_interventions(
        Interventions::new(vec![Intervention {
            hook: at(HookPoint::MlpPost),
            columns: Some(vec![args.neuron]),
            positions: None,
            per_sequence: None,
            sequences: None,
            action: Action::Zero,
            spec: format!("--ablate blocks.{layer}.mlp.hook_post:{}", args.neuron),
        }]),
    );
    let (mut ablated_acts, _) =
        engine.forward_from(&batch, &ablated, &Resume { layer, resid: &resid_pre })?;
    let ablated_logits =
        ablated_acts.take(Hook::Logits).context("the ablated forward did not read the logits")?;

    // c_fc again, on the GPU's own ln_2 output, with the kernel recording who stores what.
    let c_fc = &model.weights.blocks[layer].c_fc;
    let (h, inter, n_tokens) = (config.hidden_size, config.intermediate_size, ids.len());
    let k = &engine.kernels;
    let gpu = &engine.gpu;
    let layer_gpu = engine.model.mlp_expansion(layer).context("the engine holds the block explained")?;
    let x_buf = gpu.upload("x", bytemuck::cast_slice(&x_rows))?;
    let (workgroups, invocations) =
        (gpu.storage("workgroups", n_tokens * inter)?, gpu.storage("invocations", n_tokens * inter)?);
    let scratch = k.scratch(gpu, n_tokens, &[h])?;
    let mut rec = Recorder::new(gpu, false);
    k.linear_owners(
        &mut rec,
        layer_gpu,
        &x_buf,
        &workgroups,
        &invocations,
        Rows { n_tokens, scratch: &scratch },
    )?;
    rec.finish()?;
    let recorded_workgroups = gpu.read(&workgroups, n_tokens * inter)?;
    let recorded_invocations = gpu.read(&invocations, n_tokens * inter)?;

    let weights = c_fc.weight.values();
    let w = weights[args.neuron * h..(args.neuron + 1) * h].to_vec();
    let bias = c_fc.bias.values()[args.neuron];
    let split = variant.spec().linear_split;
    let order = split.k_order();
    let eps = config.layer_norm_epsilon as f64;
    let mut tokens = Vec::new();
    for (t, &id) in ids.iter().enumerate() {
        let row = |m: &[f32], width: usize| m[t * width..(t + 1) * width].to_vec();
        let x = row(&x_rows, h);
        let pre_gpu = pre_rows[t * inter + args.neuron];
        let owner = split.owner(t, args.neuron, n_tokens, h, inter);
        let wg_bits = recorded_workgroups[t * inter + args.neuron].to_bits();
        let (pre_replayed, pre_replayed_fused) =
            (order.replay(&x, &w, bias, false), order.replay(&x, &w, bias, true));
        let products: Vec<f64> = x.iter().zip(&w).map(|(&a, &b)| a as f64 * b as f64).collect();
        tokens.push(TokenExplanation {
            id,
            text: model.tokenizer.token_text(id),
            row: t,
            ln2: ln2_step(&row(&resid_mid, h), eps),
            top_positive: top_contributions(&x, &w, &products, true),
            top_negative: top_contributions(&x, &w, &products, false),
            running_sum: running_sum(order, &x, &w),
            dot_f64: products.iter().sum(),
            products,
            replay_matches: match (
                pre_replayed.to_bits() == pre_gpu.to_bits(),
                pre_replayed_fused.to_bits() == pre_gpu.to_bits(),
            ) {
                (true, true) => "both",
                (true, false) => "unfused",
                (false, true) => "fused",
                (false, false) => "neither",
            }
            .to_string(),
            pre_gpu,
            pre_replayed,
            pre_replayed_fused,
            post_gpu: post_rows[t * inter + args.neuron],
            gelu: gelu_steps(pre_gpu),
            dispatch: Dispatch {
                variant: variant.to_string(),
                kernel: variant.spec().linear.file.to_string(),
                grid: split.grid(n_tokens, h, inter),
                workgroup_size: split.workgroup_size(),
                workgroup: owner.workgroup,
                invocation: owner.invocation,
                partial_sums: owner.partial_sums,
                recorded_workgroup: [wg_bits % 65536, wg_bits / 65536],
                recorded_invocation: recorded_invocations[t * inter + args.neuron].to_bits(),
                tile: split.tile(h).into(),
                reads: split.reads(t, args.neuron, n_tokens, h, inter),
                k_order: order.describe(h),
                order,
            },
            x,
            w: w.clone(),
            bias,
        });
    }
    // The challenge's pooling, so that the value is the one `extract` and `challenge` give.
    let pre_column: Vec<f32> = (0..n_tokens).map(|t| pre_rows[t * inter + args.neuron]).collect();
    let mean_pre = pool(&pre_column, 1, &batch, Pool::Mean)[0];
    let (h, last) = (config.hidden_size, n_tokens - 1);
    let runs = Runs {
        layer,
        neuron: args.neuron,
        row: last,
        post: post_rows[last * inter + args.neuron],
        resid_final: &resid_final[last * h..(last + 1) * h],
        clean_logits: &clean_logits,
        ablated_logits: &ablated_logits,
    };
    let downstream = downstream(&model.weights, &model.tokenizer, &runs);
    let explanation = Explanation {
        word: args.word.clone(),
        layer,
        neuron: args.neuron,
        mean_pre,
        model: resolved.label.clone(),
        adapter: gpu.adapter_name(),
        variant: variant.to_string(),
        n_in: h,
        n_out: inter,
        prefix_space: args.prefix_space,
        tokens,
        downstream,
    };

    let staging = Staging::create(&args.out_dir)?;
    let at = |name: &str| staging.file(name);
    figures::contributions_png(&at(CONTRIBUTIONS_PNG), &explanation)?;
    figures::tiles_png(&at(TILES_PNG), &explanation)?;
    let json = serde_json::to_string_pretty(&explanation)?;
    output::write_atomic(&at(EXPLAIN_JSON), |f| Ok(f.write_all(json.as_bytes())?))?;
    let md = markdown(&explanation);
    output::write_atomic(&at(EXPLAIN_MD), |f| Ok(f.write_all(md.as_bytes())?))?;
    let files = staging.publish(&args.out_dir, &OUTPUT_FILES)?;
    Ok(ExplainOutcome { explanation, files })
}

/// ln_2's mean, variance and 1/√(variance + eps) of one row, in f64.
fn ln2_step(row: &[f32], eps: f64) -> Ln2Step {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let variance = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    Ln2Step { mean, variance, inv_std: 1.0 / (variance + eps).sqrt(), eps }
}

/// The largest products of one sign, largest magnitude first.
fn top_contributions(x: &[f32], w: &[f32], products: &[f64], positive: bool) -> Vec<Contribution> {
    let mut order: Vec<usize> = (0..products.len())
        .filter(|&k| if positive { products[k] > 0.0 } else { products[k] < 0.0 })
        .collect();
    order.sort_by(|&a, &b| products[b].abs().total_cmp(&products[a].abs()).then(a.cmp(&b)));
    order.truncate(TOP_CONTRIBUTIONS);
    order.into_iter().map(|k| Contribution { k, x: x[k], w: w[k], product: products[k] }).collect()
}

/// The f32 sums (no bias) in the kernel's order, at checkpoints: the running sum every
/// `CHECKPOINT_EVERY` values of k for one slice; each slice's sum and their combination for
/// several.
fn running_sum(order: KOrder, x: &[f32], w: &[f32]) -> Vec<Checkpoint> {
    let block_sum = |block: std::ops::Range<usize>| block.fold(0.0f32, |acc, k| acc + x[k] * w[k]);
    let slices = order.blocks(x.len());
    let mut points = Vec::new();
    if let [blocks] = slices.as_slice() {
        let mut sum = 0.0f32;
        for block in blocks {
            sum += block_sum(block.clone());
            if block.end % CHECKPOINT_EVERY == 0 || block.end == x.len() {
                points.push(Checkpoint { after: format!("k = 0..{}", block.end), sum });
            }
        }
        return points;
    }
    let mut total: Option<f32> = None;
    for (s, blocks) in slices.iter().enumerate() {
        let partial = blocks.iter().fold(0.0f32, |sum, block| sum + block_sum(block.clone()));
        points.push(Checkpoint { after: format!("slice {s} alone"), sum: partial });
        let so_far = total.map_or(partial, |t| t + partial);
        total = Some(so_far);
        points.push(Checkpoint { after: format!("slices 0..={s} added"), sum: so_far });
    }
    points
}

/// gelu_new(v) step by step in f64.
fn gelu_steps(v: f32) -> GeluSteps {
    let v = v as f64;
    let inner = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
    let tanh = inner.tanh();
    GeluSteps { inner, tanh, value: 0.5 * v * (1.0 + tanh) }
}
