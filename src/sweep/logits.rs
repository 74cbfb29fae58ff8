//! `neoprobe sweep logits`: what each MLP neuron of block L writes, read directly off the
//! weights. Neuron n adds `a · c_proj.weight[:, n]` to the residual stream; scaled by `ln_f`'s
//! γ and projected on the tied unembedding `wte`, that direction gives one number per token:
//! the tokens the neuron promotes and suppresses directly (TransformerLens' direct logit
//! attribution of a neuron). It ignores every later layer, `ln_f`'s normalisation (centring and
//! the division by the standard deviation) and its bias.
//!
//! On the GPU it is one linear layer: the neurons' scaled directions `[neurons, hidden]` are
//! the input rows and a chunk of `wte` rows `[chunk, hidden]` is the weight (zero bias), so the
//! 154 MB table is never bound whole; chunks and neuron blocks are sized to the adapter's limits.

use super::files::SweepFile;
use super::topk::{check_finite, End, Extremes};
use super::vocab::token_lists;
use super::{check_top_k, model_metadata, token_cell, SweepCommon, SweepOutcome, LOGITS_MD, LOGITS_TOPK};
use crate::batching::DEFAULT_BATCH_BYTES;
use crate::gpu::{Gpu, Recorder};
use crate::kernels::{Epilogue, Fused, Kernels, LinearUse, Operands, Rows, Shapes, Variant};
use crate::model::ModelDir;
use crate::notes::Notes;
use crate::out_dir::{check_out_dir, Staging};
use crate::text::sig;
use crate::tokenize::Tokenizer;
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::time::Instant;

/// Neurons listed in `logits.md`, and tokens shown per list.
pub const MD_NEURONS: usize = 30;
pub const MD_TOKENS: usize = 8;
/// What the numbers are, in the file's metadata and `logits.md`.
pub const METHOD: &str =
    "direct logit attribution: wte · (ln_f.weight ⊙ c_proj.weight[:, n]) for each neuron n; \
     later layers, ln_f's normalisation and its bias are ignored";

#[derive(Clone, Debug)]
pub struct LogitsArgs {
    pub common: SweepCommon,
    /// The block whose MLP neurons are read.
    pub layer: usize,
    pub top_k: usize,
}

/// How the work is cut to fit the adapter: neurons per block and `wte` rows per chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogitsSplit {
    pub neurons: usize,
    pub rows: usize,
}

impl LogitsSplit {
    /// The largest blocks whose buffers fit `limits` (and, for texel kernels, whose textures
    /// do), with the output of one chunk within the default batch memory.
    pub fn new(
        limits: &wgpu::Limits,
        texels: bool,
        hidden: usize,
        neurons: usize,
        vocab: usize,
    ) -> LogitsSplit {
        let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) as usize;
        let max_texture = limits.max_texture_dimension_2d as usize;
        let mut block = neurons.min(binding / (4 * hidden)).max(1);
        if texels {
            block = block.min(max_texture);
        }
        let mut rows = vocab
            .min(binding / (4 * hidden))
            .min(binding / (4 * block))
            .min(DEFAULT_BATCH_BYTES / (4 * block));
        if texels {
            // The lane-packed weight texture is 4 rows high per 32 weight rows and per 1024 texels
            // of a row (src/kernels/texels.rs).
            let chunks = hidden.div_ceil(4).div_ceil(1024);
            rows = rows.min(max_texture / (4 * chunks) * 32);
        }
        if rows < vocab && rows > 32 {
            rows -= rows % 32;
        }
        LogitsSplit { neurons: block, rows: rows.max(1) }
    }
}

/// Each neuron's direction as the unembedding reads it: `γ ⊙ c_proj.weight[:, n]`, one row of
/// `hidden` per neuron.
pub fn neuron_directions(c_proj: &[f32], gamma: &[f32], neurons: usize) -> Vec<f32> {
    let hidden = gamma.len();
    let mut out = vec![0.0f32; neurons * hidden];
    for (j, &g) in gamma.iter().enumerate() {
        for n in 0..neurons {
            out[n * hidden + j] = g * c_proj[j * neurons + n];
        }
    }
    out
}

pub fn sweep_logits(args: &LogitsArgs, notes: &dyn Notes) -> Result<SweepOutcome> {
    let started = Instant::now();
    let c = &args.common;
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let files = [LOGITS_TOPK, LOGITS_MD];
    check_out_dir(&c.out_dir, c.force, &files, "the sweep's files")?;
    let resolved = c.model.resolve(&c.fetch, notes)?;
    let dir = ModelDir::open(&resolved.dir)?;
    let config = dir.config()?;
    if args.layer >= config.num_layers {
        bail!(
            "--layer {} is out of range: the model has {} blocks; choose a layer from 0 to {}",
            args.layer,
            config.num_layers,
            config.num_layers - 1
        );
    }
    check_top_k(args.top_k, config.vocab_size)?;
    let tokenizer = Tokenizer::load(&dir.tokenizer_path())?;
    let weights = dir.weights_of_blocks(&config, config.num_layers)?;
    let ln_f = weights.ln_f.as_ref().expect("every block is loaded, so ln_f is");
    let (h, inter, vocab) = (config.hidden_size, config.intermediate_size, config.vocab_size);
    let directions =
        neuron_directions(&weights.blocks[args.layer].c_proj.weight.values(), &ln_f.weight.values(), inter);

    let gpu = Gpu::new()?;
    let variant = c.variant.unwrap_or_else(|| Variant::best_for(&gpu));
    let adapter = gpu.adapter_name();
    let texels = variant.spec().operands == Operands::Texels;
    let split = LogitsSplit::new(&gpu.device.limits(), texels, h, inter, vocab);
    let shapes = Shapes {
        linears: vec![LinearUse { fused: Fused::Nothing, n_in: h, n_out: split.rows }],
        head_dims: vec![],
    };
    let kernels = Kernels::new(&gpu, variant, &shapes)?;
    notes.step(&format!(
        "{inter} neurons of block {} against {vocab} tokens on {adapter}: {} neurons × {} tokens at a time",
        args.layer, split.neurons, split.rows
    ));

    let mut top = Extremes::new(End::Top, args.top_k, inter);
    let mut bottom = Extremes::new(End::Bottom, args.top_k, inter);
    let wte = weights.wte.bytes();
    let mut chunks = 0;
    for n0 in (0..inter).step_by(split.neurons) {
        let n1 = (n0 + split.neurons).min(inter);
        let x = gpu.upload("neuron directions", bytemuck::cast_slice(&directions[n0 * h..n1 * h]))?;
        let scratch = kernels.scratch(&gpu, n1 - n0, &[h])?;
        for r0 in (0..vocab).step_by(split.rows) {
            let r1 = (r0 + split.rows).min(vocab);
            let layer = kernels.upload_linear(&gpu, "wte chunk", &[&wte[r0 * h * 4..r1 * h * 4]], None, h)?;
            let y = gpu.storage("logit effects", (n1 - n0) * (r1 - r0))?;
            let mut rec = Recorder::new(&gpu, false);
            kernels.linear(
                &mut rec,
                &layer,
                &x,
                &y,
                Epilogue::Bias,
                Rows { n_tokens: n1 - n0, scratch: &scratch },
            )?;
            rec.finish()?;
            // The chunk is on the GPU: its pages of the mapped file need not stay in memory.
            weights.wte.release_pages();
            let effects = gpu.read(&y, (n1 - n0) * (r1 - r0))?;
            let width = r1 - r0;
            check_finite(&effects, width, &|i| format!("the logit effect of neuron {}", n0 + i))?;
            for (i, row) in effects.chunks_exact(width).enumerate() {
                for (t, &value) in row.iter().enumerate() {
                    top.offer(n0 + i, value, (r0 + t) as u32);
                    bottom.offer(n0 + i, value, (r0 + t) as u32);
                }
            }
            chunks += 1;
        }
    }

    let lists = token_lists(&top, &bottom);
    let mut file = SweepFile { metadata: model_metadata(&resolved)?, ..SweepFile::default() };
    lists.insert_into(&mut file);
    for (key, value) in [
        ("sweep", "logits".to_string()),
        ("layer", args.layer.to_string()),
        ("neurons", format!("blocks.{}.mlp.hook_post (the inputs of c_proj)", args.layer)),
        ("top_k", args.top_k.to_string()),
        ("method", METHOD.to_string()),
        (
            "order",
            "top: value descending, then token id ascending; bottom: value ascending, then token id ascending"
                .to_string(),
        ),
    ] {
        file.metadata.insert(key.to_string(), value);
    }
    let staging = Staging::create(&c.out_dir)?;
    file.write(&staging.file(LOGITS_TOPK))?;
    let md = logits_markdown(&file, &lists, &tokenizer);
    crate::output::write_atomic(&staging.file(LOGITS_MD), |w| Ok(w.write_all(md.as_bytes())?))?;
    let written = staging.publish(&c.out_dir, &files)?;
    let mut summary = format!(
        "logit sweep of block {}: {inter} neurons × {vocab} tokens in {chunks} GPU chunks\n",
        args.layer
    );
    let _ = writeln!(summary, "time {:.1} s on {adapter}", started.elapsed().as_secs_f64());
    for f in &written {
        let _ = writeln!(summary, "wrote {}", f.display());
    }
    Ok(SweepOutcome { summary, files: written, streamed: None })
}

fn logits_markdown(file: &SweepFile, lists: &super::files::TokenLists, tokenizer: &Tokenizer) -> String {
    let m = &file.metadata;
    let mut s = String::new();
    let _ = writeln!(s, "# What the neurons of block {} write: direct effects on the logits\n", m["layer"]);
    let _ = writeln!(s, "Model `{}`. {}.\n", m["model"], METHOD);
    let _ = writeln!(
        s,
        "Per neuron the {} tokens with the largest and the smallest effect are in [{LOGITS_TOPK}]({LOGITS_TOPK}). \
         Below, the {MD_NEURONS} neurons with the largest effect on any token.\n",
        m["top_k"]
    );
    let _ = writeln!(s, "| neuron | largest | promotes | suppresses |");
    let _ = writeln!(s, "|---:|---:|---|---|");
    let k = lists.k;
    let reach = |n: usize| (lists.top_values[n * k] as f64).max(-(lists.bottom_values[n * k] as f64));
    let mut order: Vec<usize> = (0..lists.neurons()).collect();
    order.sort_by(|&a, &b| reach(b).total_cmp(&reach(a)).then(a.cmp(&b)));
    let cells = |list: &mut dyn Iterator<Item = (u32, f32)>| -> String {
        list.take(MD_TOKENS)
            .map(|(id, v)| format!("{} ({})", token_cell(&tokenizer.token_text(id)), sig(v as f64, 3)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for &n in order.iter().take(MD_NEURONS) {
        let _ = writeln!(
            s,
            "| {n} | {} | {} | {} |",
            sig(reach(n), 3),
            cells(&mut lists.top(n)),
            cells(&mut lists.bottom(n))
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_are_scaled_columns_of_c_proj() {
        // c_proj.weight [hidden 2, neurons 3].
        let c_proj = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let gamma = [10.0, -1.0];
        assert_eq!(neuron_directions(&c_proj, &gamma, 3), vec![10.0, -4.0, 20.0, -5.0, 30.0, -6.0]);
    }

    #[test]
    fn the_split_fits_the_adapter() {
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            max_texture_dimension_2d: 16384,
            ..wgpu::Limits::default()
        };
        let split = LogitsSplit::new(&limits, true, 768, 3072, 50257);
        assert_eq!(split.neurons, 3072);
        assert!(
            split.rows * 768 * 4 <= 128 << 20 && split.rows * 3072 * 4 <= DEFAULT_BATCH_BYTES,
            "{split:?}"
        );
        assert_eq!(split.rows % 32, 0);
        let small = LogitsSplit::new(
            &wgpu::Limits { max_texture_dimension_2d: 1024, ..limits },
            true,
            768,
            3072,
            50257,
        );
        assert_eq!(small.neurons, 1024);
        assert!(small.rows <= 1024 / 4 * 32, "{small:?}");
    }
}
