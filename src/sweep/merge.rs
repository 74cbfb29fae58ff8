//! `neoprobe sweep merge`: the outputs of `sweep corpus --shard I/N` for every I put together
//! into exactly the files one run over the whole corpus writes. Each shard keeps the top-k of its
//! sequences under a total order (value, then sequence number), so the top-k of the union of the
//! shards' lists is the top-k of the whole corpus; the sequences' tokens and activations come
//! from the shards' `contexts.jsonl` and `samples.jsonl`. The histograms' and intervals' counts
//! add, and the samples are the bottom-k of the union (see `sample`).
//!
//! The shards must come from one sweep: the same model (compared by `model_sha256`, so each
//! shard may have loaded it from its own folder), hook, k, context and texts (compared by
//! content), and together every shard of one count exactly once. The merged files carry the
//! first shard's `model` and `texts` names.

use super::corpus::{write_corpus_files, CorpusOutput, Shard, CORPUS_FILES};
use super::CORPUS_TOPK;
use crate::out_dir::{check_out_dir, Staging};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Metadata entries that may differ between the shards of one sweep: the shard itself, and the
/// names under which each shard found the model and the texts.
const PER_SHARD: [&str; 3] = ["shard", "model", "texts"];

#[derive(Clone, Debug)]
pub struct MergeArgs {
    pub shard_dirs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    pub force: bool,
}

/// What a merge did.
#[derive(Clone, Debug)]
pub struct MergeOutcome {
    pub shards: usize,
    pub files: Vec<PathBuf>,
}

pub fn merge(args: &MergeArgs) -> Result<MergeOutcome> {
    if args.shard_dirs.is_empty() {
        bail!("no shard to merge; pass the output folders of every sweep corpus --shard I/N run");
    }
    let files = CORPUS_FILES;
    check_out_dir(&args.out_dir, args.force, &files, "the merged files")?;
    let mut shards: Vec<(Shard, &Path, CorpusOutput)> = Vec::new();
    for dir in &args.shard_dirs {
        let output = CorpusOutput::read(dir)?;
        let shard = match output.file.metadata.get("shard") {
            Some(text) => Shard::parse(text).map_err(|e| {
                anyhow::anyhow!("{} holds a malformed shard entry ({e})", dir.join(CORPUS_TOPK).display())
            })?,
            None => Shard::WHOLE,
        };
        shards.push((shard, dir.as_path(), output));
    }

    // One sweep: the first shard's settings everywhere.
    let (first_shard, first_dir, first) = &shards[0];
    for (shard, dir, output) in &shards[1..] {
        if shard.count != first_shard.count {
            bail!(
                "{} is shard {shard} but {} is shard {first_shard}; merge the shards of one --shard I/N count",
                dir.display(),
                first_dir.display()
            );
        }
        let keys: std::collections::BTreeSet<&String> =
            first.file.metadata.keys().chain(output.file.metadata.keys()).collect();
        for key in keys.into_iter().filter(|k| !PER_SHARD.contains(&k.as_str())) {
            let (a, b) = (first.file.metadata.get(key), output.file.metadata.get(key));
            if a != b {
                let show = |v: Option<&String>| v.map_or("nothing".to_string(), |v| format!("{v:?}"));
                let what = match key.as_str() {
                    "model_sha256" => "were run on different models".to_string(),
                    "texts_sha256" | "texts_tokens" => "swept different texts".to_string(),
                    _ => format!("differ in {key} ({} against {})", show(a), show(b)),
                };
                bail!(
                    "shards {} and {} {what}; merge the outputs of one sweep only",
                    first_dir.display(),
                    dir.display()
                );
            }
        }
        if (output.top.width(), output.top.k) != (first.top.width(), first.top.k) {
            bail!(
                "{} holds {} neurons × {} entries but {} holds {} × {}; merge the outputs of one sweep only",
                dir.display(),
                output.top.width(),
                output.top.k,
                first_dir.display(),
                first.top.width(),
                first.top.k
            );
        }
    }
    let count = first_shard.count;
    let mut seen: HashMap<usize, &Path> = HashMap::new();
    for (shard, dir, _) in &shards {
        if let Some(other) = seen.insert(shard.index, dir) {
            bail!("{} and {} are both shard {shard}; pass each shard once", other.display(), dir.display());
        }
    }
    if let Some(missing) = (0..count).find(|i| !seen.contains_key(i)) {
        bail!("shard {missing}/{count} is missing; pass the output folders of all {count} shards");
    }

    let mut merged = shards[0].2.lists.clone();
    let mut contexts = shards[0].2.contexts.clone();
    for (_, _, output) in &shards[1..] {
        merged.absorb(&output.lists);
        contexts.extend(output.contexts.iter().map(|(k, v)| (*k, v.clone())));
    }
    let mut metadata = shards[0].2.file.metadata.clone();
    metadata.remove("shard");
    let staging = Staging::create(&args.out_dir)?;
    write_corpus_files(&staging.path, metadata, &merged, &contexts)?;
    Ok(MergeOutcome { shards: shards.len(), files: staging.publish(&args.out_dir, &files)? })
}
