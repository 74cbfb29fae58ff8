//! Where a model folder keeps its weights: one `model.safetensors`, or transformers' sharded
//! layout, `model.safetensors.index.json` naming the shard that holds each tensor:
//!
//! ```json
//! {"metadata": {"total_size": 526000000},
//!  "weight_map": {"transformer.wte.weight": "model-00001-of-00002.safetensors", ...}}
//! ```
//!
//! When a folder has both, the single file is used, as transformers does.

use crate::error::not_found;
use anyhow::{anyhow, bail, Result};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The single weights file.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// The weights of a model folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightFiles {
    /// `model.safetensors`.
    Single(PathBuf),
    /// `model.safetensors.index.json` and its shards.
    Sharded(ShardIndex),
}

impl WeightFiles {
    /// The weights of `dir`: `model.safetensors` when it exists, else the index (read, and its
    /// shards checked to exist). Neither is an error tagged [`not_found`].
    pub fn find(dir: &Path) -> Result<WeightFiles> {
        let single = dir.join(WEIGHTS_FILE);
        if single.exists() {
            return Ok(WeightFiles::Single(single));
        }
        let index = dir.join(WEIGHTS_INDEX);
        if !index.exists() {
            return Err(not_found(format!(
                "cannot open {}: the model folder needs the model's model.safetensors (or a sharded {WEIGHTS_INDEX} with its shards)",
                single.display()
            )));
        }
        let index = ShardIndex::read(&index)?;
        for shard in &index.shards {
            let path = index.shard_path(shard);
            if !path.exists() {
                return Err(not_found(format!(
                    "{} names the shard {shard}, but {} does not exist: put every shard the index names in the model folder (or re-download the model)",
                    index.path.display(),
                    path.display()
                )));
            }
        }
        Ok(WeightFiles::Sharded(index))
    }

    /// The files to map, in order: the single file, or each shard once.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            WeightFiles::Single(path) => vec![path.clone()],
            WeightFiles::Sharded(index) => index.shards.iter().map(|s| index.shard_path(s)).collect(),
        }
    }
}

/// A parsed `model.safetensors.index.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardIndex {
    /// The index file; shards are named relative to its folder.
    pub path: PathBuf,
    /// Tensor name → the shard file holding it.
    pub weight_map: BTreeMap<String, String>,
    /// Every shard the map names, once each, in byte order of their names (the order
    /// transformers loads them in).
    pub shards: Vec<String>,
}

impl ShardIndex {
    /// Reads and checks the index at `path` (not its shards).
    pub fn read(path: &Path) -> Result<ShardIndex> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                not_found(format!(
                    "{} does not exist: a sharded model folder needs its index (or pass a folder with model.safetensors)",
                    path.display()
                ))
            } else {
                anyhow!("cannot read {} ({e}); check that the model folder is readable", path.display())
            }
        })?;
        ShardIndex::parse(&bytes, path)
    }

    /// Checks the content of an index file that is (or will be) at `path`: valid JSON, a
    /// `weight_map` object naming each tensor once, a shard file name for each.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<ShardIndex> {
        let redo = "re-download or re-export the model";
        let file: IndexFile = serde_json::from_slice(bytes)
            .map_err(|e| anyhow!("{} is not a valid safetensors index ({e}); {redo}", path.display()))?;
        let Some(Entries(entries)) = file.weight_map else {
            bail!("{} has no \"weight_map\" naming the shard of each tensor; {redo}", path.display());
        };
        if entries.is_empty() {
            bail!("{} lists no tensors in its \"weight_map\"; {redo}", path.display());
        }
        let mut weight_map = BTreeMap::new();
        for (tensor, shard) in entries {
            if !is_shard_name(&shard) {
                bail!(
                    "{} puts tensor {tensor} in \"{shard}\", which is not a .safetensors file name in the index's folder; {redo}",
                    path.display()
                );
            }
            if let Some(first) = weight_map.insert(tensor.clone(), shard.clone()) {
                bail!("{} lists tensor {tensor} twice (in {first} and in {shard}); {redo}", path.display());
            }
        }
        let mut shards: Vec<String> = weight_map.values().cloned().collect();
        shards.sort();
        shards.dedup();
        Ok(ShardIndex { path: path.to_path_buf(), weight_map, shards })
    }

    /// Where the shard `name` is.
    pub fn shard_path(&self, name: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new("")).join(name)
    }
}

/// A plain file name ending in `.safetensors`: never a path out of the folder.
fn is_shard_name(name: &str) -> bool {
    name.len() > ".safetensors".len()
        && name.ends_with(".safetensors")
        && !name.starts_with('.')
        && !name.chars().any(|c| c.is_control() || matches!(c, '/' | '\\' | ':'))
}

#[derive(Deserialize)]
struct IndexFile {
    weight_map: Option<Entries>,
}

/// A JSON object's entries in order, repeats kept (`serde_json`'s map keeps only the last).
struct Entries(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping tensor names to shard file names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{kind_of, Kind};

    fn parse(text: &str) -> Result<ShardIndex> {
        ShardIndex::parse(text.as_bytes(), Path::new("m/model.safetensors.index.json"))
    }

    #[test]
    fn an_index_lists_each_shard_once_in_name_order() {
        let index = parse(
            r#"{"metadata": {"total_size": 12},
                "weight_map": {"b": "model-00002-of-00002.safetensors", "a": "model-00001-of-00002.safetensors",
                               "c": "model-00002-of-00002.safetensors"}}"#,
        )
        .unwrap();
        assert_eq!(index.shards, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
        assert_eq!(index.weight_map["c"], "model-00002-of-00002.safetensors");
        assert_eq!(index.shard_path("x.safetensors"), Path::new("m/x.safetensors"));
    }

    #[test]
    fn bad_indexes_are_one_line_errors_naming_the_file() {
        for (text, expect) in [
            ("{ not json", "is not a valid safetensors index"),
            (r#"{"metadata": {}}"#, "has no \"weight_map\""),
            (r#"{"weight_map": {}}"#, "lists no tensors"),
            (r#"{"weight_map": ["a"]}"#, "is not a valid safetensors index"),
            (r#"{"weight_map": {"a": 3}}"#, "is not a valid safetensors index"),
            (r#"{"weight_map": {"a": "../x.safetensors"}}"#, "not a .safetensors file name"),
            (r#"{"weight_map": {"a": "x.bin"}}"#, "not a .safetensors file name"),
            (r#"{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}"#, "lists tensor a twice"),
        ] {
            let err = parse(text).unwrap_err();
            let shown = format!("{err:#}");
            assert!(shown.contains("m/model.safetensors.index.json"), "{shown}");
            assert!(shown.contains(expect), "{text}: {shown}");
            assert!(shown.contains("re-download"), "{shown}");
            assert!(!shown.contains('\n'), "{shown}");
        }
    }

    #[test]
    fn a_folder_without_weights_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = WeightFiles::find(dir.path()).unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
        assert!(err.to_string().contains("needs the model's model.safetensors"), "{err}");
    }
}
