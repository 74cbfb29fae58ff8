//! `neoprobe sweep vocab`: every token id of the vocabulary as a one-token sequence (the
//! challenge's "word alone" setting, at position 0 where a token sees only itself), streamed in
//! batches; per neuron the top-k and bottom-k tokens, mean and SD, kept as batches arrive, so the
//! `[vocabulary × neurons]` matrix never exists in host memory.
//!
//! With `prefix_space`, each id's text gets one leading space and is tokenized again: where that
//! gives a single token (`dog` → ` dog`), that token runs and is listed under its own id; where
//! it gives several (a token that already starts with a space, one whose bytes are not a whole
//! character, one whose spaced form is not in the vocabulary), the id is left out and counted in
//! the metadata's `skipped`.

use super::files::{Data, SweepFile, TokenLists};
use super::topk::{check_finite, End, Extremes, Moments};
use super::{check_top_k, model_metadata, token_cell, SweepCommon, SweepOutcome, VOCAB_MD, VOCAB_TOPK};
use crate::batching::{BatchLimits, StreamStats, Streamer};
use crate::engine::{Engine, LoadedModel};
use crate::model::ModelDir;
use crate::notes::Notes;
use crate::out_dir::{check_out_dir, Staging};
use crate::text::sig;
use crate::tokenize::Tokenizer;
use anyhow::{bail, Result};
use std::fmt::Write as _;

/// Neurons listed in `vocab.md`, and tokens shown per neuron.
pub const MD_NEURONS: usize = 30;
pub const MD_TOKENS: usize = 8;

#[derive(Clone, Debug)]
pub struct VocabArgs {
    pub common: SweepCommon,
    pub hook: String,
    pub prefix_space: bool,
    pub top_k: usize,
}

/// The ids that run alone, in ascending order, and how many ids were left out (only with
/// `prefix_space`: see the module's documentation).
pub fn vocab_tokens(
    tokenizer: &Tokenizer,
    vocab_size: usize,
    prefix_space: bool,
) -> Result<(Vec<u32>, usize)> {
    if !prefix_space {
        return Ok(((0..vocab_size as u32).collect(), 0));
    }
    let mut taken = vec![false; vocab_size];
    let mut skipped = 0;
    for id in 0..vocab_size as u32 {
        let text = tokenizer.token_text(id);
        let spaced = if text.is_empty() { Vec::new() } else { tokenizer.encode(&format!(" {text}"))? };
        match spaced[..] {
            [single] if (single as usize) < vocab_size && !taken[single as usize] => {
                taken[single as usize] = true
            }
            _ => skipped += 1,
        }
    }
    let ids = (0..vocab_size as u32).filter(|&id| taken[id as usize]).collect();
    Ok((ids, skipped))
}

pub fn sweep_vocab(args: &VocabArgs, notes: &dyn Notes) -> Result<SweepOutcome> {
    let c = &args.common;
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let files = [VOCAB_TOPK, VOCAB_MD];
    check_out_dir(&c.out_dir, c.force, &files, "the sweep's files")?;
    let resolved = c.model.resolve(&c.fetch, notes)?;
    let (model, plan, hook) = LoadedModel::load_for_hook(&ModelDir::open(&resolved.dir)?, &args.hook)?;
    let config = &model.config;
    check_top_k(args.top_k, config.vocab_size)?;
    let (ids, skipped) = vocab_tokens(&model.tokenizer, config.vocab_size, args.prefix_space)?;
    if args.top_k > ids.len() {
        bail!(
            "--top-k {} is above the {} tokens that run alone with --prefix-space; choose at most {}",
            args.top_k,
            ids.len(),
            ids.len()
        );
    }
    let mut metadata = model_metadata(&resolved)?;

    let engine = Engine::new(&model.weights, c.variant, model.load_time)?;
    let adapter = engine.gpu.adapter_name();
    let batch_tokens = BatchLimits::of(&engine).choose(c.batch_tokens, &adapter)?;
    notes.step(&format!("{} tokens alone through {hook} on {adapter}, {batch_tokens} per batch", ids.len()));
    let width = hook.width(config);
    let mut top = Extremes::new(End::Top, args.top_k, width);
    let mut bottom = Extremes::new(End::Bottom, args.top_k, width);
    let mut moments = Moments::new(width);
    let streamer = Streamer {
        engine: &engine,
        plan: &plan,
        hook,
        batch_tokens,
        notes,
        label: "vocab",
        total_tokens: ids.len() as u64,
        resume: None,
    };
    let stats = streamer.run(
        ids.iter().map(|&id| Ok(vec![id])),
        &|i| format!("token {}", ids[i]),
        |_, first, rows| {
            check_finite(&rows, width, &|r| format!("token {}", ids[first + r]))?;
            for (row, &id) in rows.chunks_exact(width).zip(&ids[first..]) {
                top.offer_row(row, id);
                bottom.offer_row(row, id);
                moments.add_row(row);
            }
            Ok(())
        },
    )?;

    let lists = token_lists(&top, &bottom);
    let mean: Vec<f32> = moments.mean().iter().map(|&m| m as f32).collect();
    let std: Vec<f32> = moments.std().iter().map(|&s| s as f32).collect();
    let mut file = SweepFile::default();
    lists.insert_into(&mut file);
    file.insert("mean", vec![width], Data::F32(mean.clone()));
    file.insert("std", vec![width], Data::F32(std.clone()));
    for (key, value) in [
        ("sweep", "vocab".to_string()),
        ("hook", hook.to_string()),
        ("top_k", args.top_k.to_string()),
        ("prefix_space", args.prefix_space.to_string()),
        ("n_tokens", ids.len().to_string()),
        ("skipped", skipped.to_string()),
        ("std_ddof", "1".to_string()),
        (
            "order",
            "top: value descending, then token id ascending; bottom: value ascending, then token id ascending"
                .to_string(),
        ),
    ] {
        metadata.insert(key.to_string(), value);
    }
    file.metadata = metadata;

    let staging = Staging::create(&c.out_dir)?;
    file.write(&staging.file(VOCAB_TOPK))?;
    let md = vocab_markdown(&file, &lists, &mean, &std, &model.tokenizer);
    crate::output::write_atomic(&staging.file(VOCAB_MD), |w| Ok(w.write_all(md.as_bytes())?))?;
    let written = staging.publish(&c.out_dir, &files)?;
    Ok(SweepOutcome {
        summary: summary_text(&format!("vocab sweep of {hook}"), &stats, batch_tokens, &adapter, &written),
        files: written,
        streamed: Some((stats, batch_tokens)),
    })
}

/// The `k` lists of both ends as `[neurons, k]` arrays.
pub(crate) fn token_lists(top: &Extremes<u32>, bottom: &Extremes<u32>) -> TokenLists {
    let mut lists = TokenLists {
        k: top.k,
        top_ids: Vec::new(),
        top_values: Vec::new(),
        bottom_ids: Vec::new(),
        bottom_values: Vec::new(),
    };
    for neuron in 0..top.width() {
        for e in top.list(neuron) {
            lists.top_ids.push(e.key as i32);
            lists.top_values.push(e.value);
        }
        for e in bottom.list(neuron) {
            lists.bottom_ids.push(e.key as i32);
            lists.bottom_values.push(e.value);
        }
    }
    lists
}

/// Lines for stdout: what ran, how fast, where the files went.
pub(crate) fn summary_text(
    what: &str,
    stats: &StreamStats,
    batch_tokens: usize,
    adapter: &str,
    files: &[std::path::PathBuf],
) -> String {
    let wall = stats.wall.as_secs_f64();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{what}: {} sequences, {} tokens in {} batches of at most {batch_tokens} tokens",
        stats.sequences, stats.tokens, stats.batches
    );
    let _ = writeln!(
        s,
        "time {wall:.1} s ({:.0} tokens/s; forwards {:.1} s) on {adapter}",
        stats.tokens as f64 / wall.max(1e-9),
        stats.forward.as_secs_f64()
    );
    for f in files {
        let _ = writeln!(s, "wrote {}", f.display());
    }
    s
}

/// How sharply a neuron singles out its top token: (max − mean) / SD over every token run.
pub fn selectivity(max: f32, mean: f32, std: f32) -> f64 {
    if std > 0.0 {
        (max as f64 - mean as f64) / std as f64
    } else {
        0.0
    }
}

fn vocab_markdown(
    file: &SweepFile,
    lists: &TokenLists,
    mean: &[f32],
    std: &[f32],
    tokenizer: &Tokenizer,
) -> String {
    let m = &file.metadata;
    let mut s = String::new();
    let _ = writeln!(s, "# Every token alone: `{}`\n", m["hook"]);
    let _ = writeln!(
        s,
        "Model `{}`; {} token ids each run as a one-token sequence{}; per neuron the {} highest and lowest activations in [{VOCAB_TOPK}]({VOCAB_TOPK}).\n",
        m["model"],
        m["n_tokens"],
        if m["prefix_space"] == "true" {
            format!(" with one leading space ({} ids whose spaced form is not a single token left out)", m["skipped"])
        } else {
            String::new()
        },
        m["top_k"]
    );
    let _ = writeln!(
        s,
        "The {MD_NEURONS} most selective neurons: selectivity is (top activation − mean) / SD over all tokens run.\n"
    );
    let _ = writeln!(s, "| neuron | selectivity | top | mean | SD | top {MD_TOKENS} tokens |");
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---|");
    let k = lists.k;
    let mut order: Vec<usize> = (0..mean.len()).collect();
    let z = |n: usize| selectivity(lists.top_values[n * k], mean[n], std[n]);
    order.sort_by(|&a, &b| z(b).total_cmp(&z(a)).then(a.cmp(&b)));
    for &n in order.iter().take(MD_NEURONS) {
        let tokens: Vec<String> = lists
            .top(n)
            .take(MD_TOKENS)
            .map(|(id, v)| format!("{} ({})", token_cell(&tokenizer.token_text(id)), sig(v as f64, 3)))
            .collect();
        let _ = writeln!(
            s,
            "| {n} | {} | {} | {} | {} | {} |",
            sig(z(n), 3),
            sig(lists.top_values[n * k] as f64, 3),
            sig(mean[n] as f64, 3),
            sig(std[n] as f64, 3),
            tokens.join(", ")
        );
    }
    s
}
