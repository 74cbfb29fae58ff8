//! `neoprobe patch`: activation patching. For every hook and position, the corrupt input runs
//! with that one activation taken from the clean input's run, and the logit difference
//! `logit(answer) − logit(wrong)` at the last position says how much of the clean behaviour that
//! one activation restores (TransformerLens' `patching.get_act_patch_*`).
//!
//! A hook's patched runs go through the GPU as one batch: one copy of the corrupt input per
//! position, copy `p` patched at position `p` only (an intervention with one position per
//! sequence).

use crate::batching::{BatchLimits, ResumeAt, Streamer};
use crate::engine::{Engine, LoadedModel, ModelSource};
use crate::figures::{diverging_color, font, plot_err, render};
use crate::hub::FetchOptions;
use crate::kernels::Variant;
use crate::model::{
    check_intervenable, Action, Batch, Hook, HookPlan, HookPoint, Intervention, Interventions, ModelDir,
    PatchSource,
};
use crate::notes::Notes;
use crate::out_dir::{check_out_dir, Staging};
use crate::output;
use crate::text::sig;
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

pub const LOGIT_DIFF_NPY: &str = "patch_logit_diff.npy";
pub const NORMALIZED_NPY: &str = "patch.npy";
pub const HEATMAP_PNG: &str = "patch.png";
pub const PATCH_JSON: &str = "patch.json";
pub const OUTPUT_FILES: [&str; 4] = [LOGIT_DIFF_NPY, NORMALIZED_NPY, HEATMAP_PNG, PATCH_JSON];
/// The hooks patched unless told otherwise: the residual stream entering every block.
pub const DEFAULT_HOOKS: &str = "blocks.*.hook_resid_pre";

#[derive(Clone, Debug)]
pub struct PatchArgs {
    pub model: ModelSource,
    pub fetch: FetchOptions,
    /// The prompt pairs, averaged (at least one; all of one token length).
    pub pairs: Vec<PromptPair>,
    /// A hook name or pattern (`blocks.*.hook_resid_pre`, `blocks.*.attn.hook_z`, …).
    pub hooks: String,
    pub variant: Option<Variant>,
    pub out_dir: PathBuf,
    pub force: bool,
}

/// A clean and a corrupt input, and the answer and wrong answer (texts of one token each; a
/// leading space counts), as one line of `--pairs FILE.jsonl` holds them.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptPair {
    pub clean: String,
    pub corrupt: String,
    pub answer: String,
    pub wrong: String,
}

/// Reads `--pairs FILE.jsonl`: one JSON object per line (`clean`, `corrupt`, `answer`, `wrong`);
/// blank lines are skipped.
pub fn read_pairs(path: &std::path::Path) -> Result<Vec<PromptPair>> {
    let text = crate::tokenize::read_text(path)?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let pair = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "{} line {}: {e}; each line is {{\"clean\": …, \"corrupt\": …, \"answer\": …, \"wrong\": …}}",
                path.display(),
                i + 1
            )
        })?;
        pairs.push(pair);
    }
    if pairs.is_empty() {
        bail!("{} holds no pair; write one JSON object per line", path.display());
    }
    Ok(pairs)
}

/// A pair's tokens, checked.
struct TokenizedPair {
    clean: Vec<u32>,
    corrupt: Vec<u32>,
    answer: u32,
    wrong: u32,
}

fn tokenize_pair(
    model: &LoadedModel,
    pair: &PromptPair,
    index: usize,
    count: usize,
) -> Result<TokenizedPair> {
    let which = if count > 1 { format!("pair {}: ", index + 1) } else { String::new() };
    let clean = model.tokenizer.encode(&pair.clean)?;
    let corrupt = model.tokenizer.encode(&pair.corrupt)?;
    if clean.is_empty() || corrupt.is_empty() {
        bail!("{which}the clean and the corrupt input must each give at least one token");
    }
    if clean.len() != corrupt.len() {
        bail!(
            "{which}the clean input is {} tokens and the corrupt one {}; patching needs inputs that tokenize to the same length",
            clean.len(),
            corrupt.len()
        );
    }
    let answer = one_token(model, &pair.answer, &format!("{which}the answer"))?;
    let wrong = one_token(model, &pair.wrong, &format!("{which}the wrong answer"))?;
    Ok(TokenizedPair { clean, corrupt, answer, wrong })
}

/// What `patch --json` prints and `patch.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct PatchReport {
    pub model: String,
    pub commit: Option<String>,
    pub adapter: String,
    pub variant: String,
    /// The first pair's clean and corrupt tokens (their texts).
    pub clean_tokens: Vec<String>,
    pub corrupt_tokens: Vec<String>,
    /// The first pair's answers, and how many pairs were averaged.
    pub answer: String,
    pub wrong: String,
    pub pairs: usize,
    /// `logit(answer) − logit(wrong)` at the last position, of the clean and the corrupt run
    /// (averaged over the pairs).
    pub clean_diff: f64,
    pub corrupt_diff: f64,
    /// The rows of the arrays: a hook, or a head of `attn.hook_z` (`blocks.3.attn.hook_z head 2`).
    pub hooks: Vec<String>,
    /// `[hooks, positions]`.
    pub shape: Vec<usize>,
    /// The patched runs' logit differences, row by row (`patch_logit_diff.npy`).
    pub logit_diff: Vec<f32>,
    /// `(patched − corrupt) / (clean − corrupt)`, row by row (`patch.npy`).
    pub normalized: Vec<f32>,
    pub files: Vec<PathBuf>,
}

/// One text as one token (`--answer`, `--wrong`).
fn one_token(model: &LoadedModel, text: &str, flag: &str) -> Result<u32> {
    let ids = model.tokenizer.encode(text)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        _ => bail!(
            "{flag} {text:?} is {} tokens; give a text of one token (a leading space is part of the token: \" Paris\")",
            ids.len()
        ),
    }
}

pub fn patch(args: &PatchArgs, notes: &dyn Notes) -> Result<PatchReport> {
    check_out_dir(&args.out_dir, args.force, &OUTPUT_FILES, "patch's files")?;
    if args.pairs.is_empty() {
        bail!("no prompt pair given; pass --clean, --corrupt, --answer and --wrong, or --pairs FILE");
    }
    let resolved = args.model.resolve(&args.fetch, notes)?;
    let (model, _) = LoadedModel::load(&ModelDir::open(&resolved.dir)?, |_| HookPlan::new(&[Hook::Logits]))?;
    let config = &model.config;
    let hooks = Hook::expand(&args.hooks, config)?;
    for &hook in &hooks {
        check_intervenable(hook).with_context(|| format!("--hook {}", args.hooks))?;
    }
    // The rows: each hook whole, or per head for attn.hook_z.
    let d = config.head_dim();
    let rows: Vec<(Hook, Option<usize>)> = hooks
        .iter()
        .flat_map(|&hook| match hook {
            Hook::Block { point: HookPoint::AttnZ, .. } => {
                (0..config.num_heads).map(|h| (hook, Some(h))).collect()
            }
            _ => vec![(hook, None)],
        })
        .collect();
    let pairs = args
        .pairs
        .iter()
        .enumerate()
        .map(|(i, pair)| tokenize_pair(&model, pair, i, args.pairs.len()))
        .collect::<Result<Vec<_>>>()?;
    let n = pairs[0].clean.len();
    if let Some(i) = pairs.iter().position(|p| p.clean.len() != n) {
        bail!(
            "pair {} is {} tokens but pair 1 is {n}; the pairs are averaged position by position and must all be as long",
            i + 1,
            pairs[i].clean.len()
        );
    }
    if n > config.max_position_embeddings {
        bail!("the inputs are {n} tokens; the model has {} positions", config.max_position_embeddings);
    }

    let engine = Engine::new(&model.weights, args.variant, model.load_time)?;
    let adapter = engine.gpu.adapter_name();
    notes.step(&format!(
        "{} rows × {n} positions × {} pairs patched on {adapter} with the {} kernels",
        rows.len(),
        pairs.len(),
        engine.kernels.variant
    ));
    let vocab = config.vocab_size;
    // Only the logits at the last position are compared.
    let logits_plan = HookPlan::new(&[Hook::Logits])?.with_last_token_logits();
    let batch_tokens = BatchLimits::for_plan(&engine, &logits_plan).choose(None, &adapter)?;
    let mut wanted = hooks.clone();
    wanted.push(Hook::Logits);
    let clean_plan = HookPlan::new(&wanted)?.with_last_token_logits();
    // The corrupt run's input to every block patched: a patched run resumes there, since
    // nothing before the patched hook can change.
    let first_blocks: Vec<Hook> =
        hooks.iter().filter_map(|h| h.layer()).map(|l| Hook::block(l, HookPoint::ResidPre)).collect();
    let corrupt_plan =
        HookPlan::new(&[&first_blocks[..], &[Hook::Logits]].concat())?.with_last_token_logits();
    let (mut clean_diff, mut corrupt_diff) = (0.0f64, 0.0f64);
    let mut sums = vec![0.0f64; rows.len() * n];
    for pair in &pairs {
        let last_diff = |logits: &[f32], sequence: usize| -> f64 {
            let row = &logits[sequence * vocab..(sequence + 1) * vocab];
            row[pair.answer as usize] as f64 - row[pair.wrong as usize] as f64
        };
        // The clean run: its logits and every patched hook's values; the corrupt run's logits
        // and block inputs.
        let (clean_acts, _) =
            engine.forward(&Batch::pack(std::slice::from_ref(&pair.clean), n)?, &clean_plan, false)?;
        clean_diff += last_diff(clean_acts.get(Hook::Logits).context("the clean run's logits")?, 0);
        let (corrupt_acts, _) =
            engine.forward(&Batch::pack(std::slice::from_ref(&pair.corrupt), n)?, &corrupt_plan, false)?;
        corrupt_diff += last_diff(corrupt_acts.get(Hook::Logits).context("the corrupt run's logits")?, 0);
        // Per row: n copies of the corrupt input, copy p patched at position p, in batches that
        // resume at the row's block.
        let copies: Vec<Vec<u32>> = vec![pair.corrupt.clone(); n];
        for (r, &(hook, head)) in rows.iter().enumerate() {
            let values = clean_acts.get(hook).context("the clean run read every patched hook")?;
            let patch = Intervention {
                hook,
                columns: head.map(|h| (h * d..(h + 1) * d).collect()),
                positions: None,
                per_sequence: Some((0..n).collect()),
                sequences: None,
                action: Action::Patch(PatchSource {
                    file: "the clean run".to_string(),
                    values: values.repeat(n),
                    width: hook.width(config),
                    lengths: Some(vec![n; n]),
                    offsets: Vec::new(),
                }),
                spec: format!("--patch {hook} (from the clean run)"),
            };
            let plan =
                logits_plan.clone().with_interventions(Interventions::new(vec![patch]).for_run(&vec![n; n])?);
            let layer = hook.layer().expect("every patched hook is a block's");
            let resid = corrupt_acts
                .get(Hook::block(layer, HookPoint::ResidPre))
                .context("the corrupt run read every patched block's input")?;
            let from_corrupt = |_: usize| resid;
            let streamer = Streamer {
                engine: &engine,
                plan: &plan,
                hook: Hook::Logits,
                batch_tokens,
                notes,
                label: "patch",
                total_tokens: (n * n) as u64,
                resume: Some(ResumeAt { layer, rows: &from_corrupt }),
            };
            let row = &mut sums[r * n..(r + 1) * n];
            streamer.run(
                copies.iter().cloned().map(Ok),
                &|p| format!("the copy patched at position {p}"),
                |batch, first, logits| {
                    for s in 0..batch.n_sequences() {
                        row[first + s] += last_diff(&logits, s);
                    }
                    Ok(())
                },
            )?;
        }
    }
    let count = pairs.len() as f64;
    let (clean_diff, corrupt_diff) = (clean_diff / count, corrupt_diff / count);
    let logit_diff: Vec<f32> = sums.iter().map(|&s| (s / count) as f32).collect();
    let gap = clean_diff - corrupt_diff;
    let normalized: Vec<f32> = sums.iter().map(|&s| ((s / count - corrupt_diff) / gap) as f32).collect();
    if gap == 0.0 {
        notes.warn("the clean and corrupt runs give the same logit difference; patch.npy is not finite");
    }
    let (clean, corrupt) = (&pairs[0].clean, &pairs[0].corrupt);

    let token_texts = |ids: &[u32]| ids.iter().map(|&id| model.tokenizer.token_text(id)).collect::<Vec<_>>();
    let mut report = PatchReport {
        model: resolved.label,
        commit: resolved.commit,
        adapter,
        variant: engine.kernels.variant.to_string(),
        clean_tokens: token_texts(clean),
        corrupt_tokens: token_texts(corrupt),
        answer: args.pairs[0].answer.clone(),
        wrong: args.pairs[0].wrong.clone(),
        pairs: pairs.len(),
        clean_diff,
        corrupt_diff,
        hooks: rows
            .iter()
            .map(|(hook, head)| head.map_or_else(|| hook.to_string(), |h| format!("{hook} head {h}")))
            .collect(),
        shape: vec![rows.len(), n],
        logit_diff,
        normalized,
        files: Vec::new(),
    };
    let staging = Staging::create(&args.out_dir)?;
    let metadata = HashMap::new();
    output::write_array(&staging.file(LOGIT_DIFF_NPY), &report.shape, &report.logit_diff, &metadata)?;
    output::write_array(&staging.file(NORMALIZED_NPY), &report.shape, &report.normalized, &metadata)?;
    heatmap_png(&staging.file(HEATMAP_PNG), &report)?;
    report.files = OUTPUT_FILES.iter().map(|f| args.out_dir.join(f)).collect();
    let json = serde_json::to_vec_pretty(&report)?;
    output::write_atomic(&staging.file(PATCH_JSON), |w| Ok(w.write_all(&json)?))?;
    report.files = staging.publish(&args.out_dir, &OUTPUT_FILES)?;
    Ok(report)
}

/// The normalized heatmap: a row per hook, a column per position labelled with the corrupt
/// input's token (and the clean one's where they differ), blue below 0, red above.
fn heatmap_png(path: &std::path::Path, r: &PatchReport) -> Result<()> {
    let (rows, cols) = (r.shape[0], r.shape[1]);
    let cell = 48u32;
    let (left, top, bottom) = (260u32, 70u32, 140u32);
    let (width, height) = ((left + cell * cols as u32 + 40).max(720), top + cell * rows as u32 + bottom);
    render(
        path,
        (width, height),
        |_| {},
        |root| {
            let title = [
            "(patched − corrupt) / (clean − corrupt): white 0, red 1 (all of the clean answer), blue below 0".to_string(),
            format!(
                "of logit({:?}) − logit({:?}) at the last position; clean {}, corrupt {}",
                r.answer,
                r.wrong,
                sig(r.clean_diff, 3),
                sig(r.corrupt_diff, 3)
            ),
        ];
            for (i, line) in title.iter().enumerate() {
                root.draw(&Text::new(line.clone(), (10, 10 + 24 * i as i32), font(15))).map_err(plot_err)?;
            }
            for (i, hook) in r.hooks.iter().enumerate() {
                let y = (top + cell * i as u32) as i32;
                root.draw(&Text::new(hook.clone(), (10, y + cell as i32 / 3), font(14))).map_err(plot_err)?;
                for j in 0..cols {
                    let v = r.normalized[i * cols + j] as f64;
                    let x = (left + cell * j as u32) as i32;
                    let color = diverging_color(v, 1.0);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell as i32 - 1, y + cell as i32 - 1)],
                        color.filled(),
                    ))
                    .map_err(plot_err)?;
                }
            }
            for j in 0..cols {
                let x = (left + cell * j as u32) as i32;
                let y = (top + cell * rows as u32) as i32 + 8;
                let (c, k) = (&r.corrupt_tokens[j], &r.clean_tokens[j]);
                let label = if c == k { format!("{c:?}") } else { format!("{c:?}/{k:?}") };
                root.draw(&Text::new(label, (x + 4, y), font(12).transform(FontTransform::Rotate90)))
                    .map_err(plot_err)?;
            }
            Ok(())
        },
    )
}
