//! GPT-Neo: configuration, weights, hook points, and the forward pass on the GPU.

mod batch;
mod config;
mod files;
mod forward;
mod hooks;
mod intervene;
mod loss;
mod weights;

pub use batch::Batch;
pub use config::{AttentionKind, GptNeoConfig};
pub use files::{ShardIndex, WeightFiles, WEIGHTS_FILE, WEIGHTS_INDEX};
pub use forward::{
    attention_pattern, attention_pattern_shape, kernel_shapes, Activations, ForwardTimes, GpuModel, Resume,
    UNEMBEDDING_CHUNK_ROWS,
};
pub use hooks::{Hook, HookPlan, HookPoint};
pub use intervene::{
    check_intervenable, Action, Intervention, Interventions, Kind as InterventionKind, PatchSource,
};
pub use loss::{logsumexp, next_token_loss};
pub use weights::{BlockWeights, GptNeoWeights, HostTensor, LayerNormWeights, LinearWeights};

/// The challenge's block, and every command's default block.
pub const DEFAULT_LAYER: usize = 8;
/// The challenge's hook, `blocks.{DEFAULT_LAYER}.mlp.hook_pre`: every command's default hook.
pub const DEFAULT_HOOK: &str = "blocks.8.mlp.hook_pre";

use crate::error::not_found;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// A local model folder holding `config.json`, `tokenizer.json` and the weights: one
/// `model.safetensors`, or a sharded `model.safetensors.index.json` with its shards (see
/// [`WeightFiles`]).
#[derive(Clone, Debug)]
pub struct ModelDir {
    pub path: PathBuf,
}

impl ModelDir {
    /// Checks that the folder holds a configuration, a tokenizer and weights (for a sharded
    /// checkpoint: a readable index, and every shard it names). What is missing is an error
    /// tagged [`not_found`].
    pub fn open(path: &Path) -> Result<ModelDir> {
        if !path.is_dir() {
            return Err(not_found(format!(
                "model folder {} does not exist; pass a folder with config.json, model.safetensors and tokenizer.json",
                path.display()
            )));
        }
        let dir = ModelDir { path: path.to_path_buf() };
        let config = dir.path.join("config.json");
        if !config.is_file() {
            return Err(not_found(format!(
                "cannot read {}: the model folder needs the model's config.json",
                config.display()
            )));
        }
        let tokenizer = dir.tokenizer_path();
        if !tokenizer.is_file() {
            return Err(not_found(format!(
                "no tokenizer.json at {}: the model folder needs the model's tokenizer.json (transformers' save_pretrained writes it)",
                tokenizer.display()
            )));
        }
        dir.weight_files()?;
        Ok(dir)
    }

    pub fn config(&self) -> Result<GptNeoConfig> {
        GptNeoConfig::load(&self.path.join("config.json"))
    }

    /// Where the weights are: `model.safetensors` when present (as transformers prefers it),
    /// else `model.safetensors.index.json` and its shards.
    pub fn weight_files(&self) -> Result<WeightFiles> {
        WeightFiles::find(&self.path)
    }

    /// The weights the forward needs to reach the deepest hook of `plan`.
    pub fn weights(&self, config: &GptNeoConfig, plan: &HookPlan) -> Result<GptNeoWeights> {
        self.weights_of_blocks(config, plan.blocks_needed(config))
    }

    /// The embeddings and the first `n_blocks` blocks (and `ln_f` when that is all of them).
    pub fn weights_of_blocks(&self, config: &GptNeoConfig, n_blocks: usize) -> Result<GptNeoWeights> {
        GptNeoWeights::load(&self.weight_files()?, config, n_blocks)
    }

    /// What identifies the weights, in hex: for `model.safetensors` its SHA-256; for a sharded
    /// checkpoint the SHA-256 of the lines `{sha256}  {file}\n` (as `sha256sum` prints them) for
    /// `model.safetensors.index.json` and then each shard in byte order of its name, which is
    /// what `sha256sum model.safetensors.index.json SHARDS... | sha256sum` gives in the folder.
    /// A sharded copy of a model therefore has another identity than its single file.
    pub fn weights_sha256(&self) -> Result<String> {
        match self.weight_files()? {
            WeightFiles::Single(path) => crate::sweep::sha256_file(&path),
            WeightFiles::Sharded(index) => {
                let mut lines = format!("{}  {WEIGHTS_INDEX}\n", crate::sweep::sha256_file(&index.path)?);
                for shard in &index.shards {
                    let sha = crate::sweep::sha256_file(&index.shard_path(shard))?;
                    lines.push_str(&format!("{sha}  {shard}\n"));
                }
                Ok(crate::sweep::sha256_bytes(lines.as_bytes()))
            }
        }
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.path.join("tokenizer.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{kind_of, Kind};
    use safetensors::SafeTensors;
    use std::collections::HashMap;

    const TINY: &str = "fixtures/tiny-neo";

    #[test]
    fn the_default_hook_is_the_default_layers_mlp_expansion() {
        assert_eq!(DEFAULT_HOOK, Hook::block(DEFAULT_LAYER, HookPoint::MlpPre).to_string());
    }

    /// A copy of the fixture model with its weights in shards: `shards[i]` lists the tensors
    /// shard `i` holds (a tensor may be listed in several, or in none), `map` says which shard
    /// the index names for each tensor.
    fn sharded_copy(
        shards: &[Vec<String>],
        map: impl Fn(&str) -> Option<usize>,
    ) -> (tempfile::TempDir, ModelDir) {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        for name in ["config.json", "tokenizer.json"] {
            std::fs::copy(Path::new(TINY).join(name), dir.join(name)).unwrap();
        }
        let bytes = std::fs::read(Path::new(TINY).join(WEIGHTS_FILE)).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let name = |i: usize| format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len());
        for (i, tensors) in shards.iter().enumerate() {
            let views = tensors.iter().map(|t| (t.clone(), file.tensor(t).unwrap()));
            let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
            std::fs::write(dir.join(name(i)), safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
        }
        let weight_map: serde_json::Map<String, serde_json::Value> =
            file.names().iter().filter_map(|t| Some((t.to_string(), name(map(t)?).into()))).collect();
        let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
        std::fs::write(dir.join(WEIGHTS_INDEX), index.to_string()).unwrap();
        let opened = ModelDir::open(dir).unwrap();
        (temp, opened)
    }

    /// The fixture's tensor names in order, and the shard (of 3) each goes to.
    fn names() -> Vec<String> {
        let bytes = std::fs::read(Path::new(TINY).join(WEIGHTS_FILE)).unwrap();
        let mut names: Vec<String> =
            SafeTensors::deserialize(&bytes).unwrap().names().iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    fn shard_of(name: &str) -> usize {
        let names = names();
        3 * names.iter().position(|n| n == name).unwrap() / names.len()
    }

    fn three_shards() -> Vec<Vec<String>> {
        let mut shards = vec![Vec::new(); 3];
        for n in names() {
            shards[shard_of(&n)].push(n);
        }
        shards
    }

    fn load(dir: &ModelDir) -> Result<GptNeoWeights> {
        let config = dir.config().unwrap();
        dir.weights_of_blocks(&config, config.num_layers)
    }

    #[test]
    fn a_sharded_folder_loads_the_same_tensors_each_from_its_shard() {
        let (_temp, dir) = sharded_copy(&three_shards(), |n| Some(shard_of(n)));
        let WeightFiles::Sharded(index) = dir.weight_files().unwrap() else { panic!("not sharded") };
        assert_eq!(index.shards.len(), 3);
        let sharded = load(&dir).unwrap();
        let single = load(&ModelDir::open(Path::new(TINY)).unwrap()).unwrap();
        assert_eq!(sharded.wte.bytes(), single.wte.bytes());
        assert_eq!(sharded.wpe.bytes(), single.wpe.bytes());
        for (a, b) in sharded.blocks.iter().zip(&single.blocks) {
            assert_eq!(a.c_fc.weight.bytes(), b.c_fc.weight.bytes());
            assert_eq!(a.q_proj.bytes(), b.q_proj.bytes());
            assert_eq!(a.ln_2.bias.bytes(), b.ln_2.bias.bytes());
        }
        assert_eq!(sharded.ln_f.unwrap().weight.bytes(), single.ln_f.unwrap().weight.bytes());
        // The identity is that of the index and the shards, not of the single file.
        assert_ne!(
            dir.weights_sha256().unwrap(),
            ModelDir::open(Path::new(TINY)).unwrap().weights_sha256().unwrap()
        );
    }

    #[test]
    fn the_single_file_wins_over_an_index() {
        let (temp, _) = sharded_copy(&three_shards(), |n| Some(shard_of(n)));
        std::fs::write(temp.path().join(WEIGHTS_INDEX), "{ broken").unwrap();
        std::fs::copy(Path::new(TINY).join(WEIGHTS_FILE), temp.path().join(WEIGHTS_FILE)).unwrap();
        let dir = ModelDir::open(temp.path()).unwrap();
        assert_eq!(dir.weight_files().unwrap(), WeightFiles::Single(temp.path().join(WEIGHTS_FILE)));
        load(&dir).unwrap();
    }

    /// Every way shards and their index can disagree is a one-line error naming a file and
    /// saying what to do.
    #[test]
    fn shards_that_do_not_match_their_index_are_named_errors() {
        let wte = "transformer.wte.weight".to_string();
        let dropped = |shards: Vec<Vec<String>>| -> Vec<Vec<String>> {
            shards.into_iter().map(|s| s.into_iter().filter(|n| *n != wte).collect()).collect()
        };
        let mut twice = three_shards();
        twice[(shard_of(&wte) + 1) % 3].push(wte.clone());
        // A case: its name, the shards' tensors, where the index says each tensor is, the error.
        type Case<'a> = (&'a str, Vec<Vec<String>>, Box<dyn Fn(&str) -> Option<usize>>, String);
        let cases: Vec<Case> = vec![
            (
                "a tensor the index lists is not in its shard",
                dropped(three_shards()),
                Box::new(|n| Some(shard_of(n))),
                format!("puts tensor {wte} in model-0000{}-of-00003.safetensors, but", shard_of(&wte) + 1),
            ),
            (
                "a tensor is in two shards",
                twice,
                Box::new(|n| Some(shard_of(n))),
                format!("holds tensor {wte}, which"),
            ),
            (
                "a shard holds a tensor the index does not list",
                three_shards(),
                Box::new(|n| (n != "transformer.h.0.mlp.c_fc.bias").then(|| shard_of(n))),
                "does not list".to_string(),
            ),
            (
                "the model needs a tensor neither lists",
                dropped(three_shards()),
                Box::new(|n| (n != "transformer.wte.weight").then(|| shard_of(n))),
                format!("lists no tensor {wte}"),
            ),
        ];
        for (what, shards, map, expect) in cases {
            let (_temp, dir) = sharded_copy(&shards, map);
            let err = load(&dir).err().unwrap_or_else(|| panic!("{what}: loaded"));
            let shown = format!("{err:#}");
            assert!(shown.contains(&expect), "{what}: {shown}");
            assert!(shown.contains(".safetensors") && !shown.contains('\n'), "{what}: {shown}");
            assert!(
                shown.contains("re-download or re-export") || shown.contains("GPT-Neo checkpoint"),
                "{shown}"
            );
        }
    }

    #[test]
    fn what_a_model_folder_lacks_is_tagged_not_found() {
        let missing = ModelDir::open(Path::new("no/such/folder")).unwrap_err();
        assert_eq!(kind_of(&missing), Kind::NotFound);
        assert!(missing.to_string().starts_with("model folder no/such/folder does not exist"), "{missing}");
        let (temp, _) = sharded_copy(&three_shards(), |n| Some(shard_of(n)));
        let shard = temp.path().join("model-00002-of-00003.safetensors");
        std::fs::remove_file(&shard).unwrap();
        let err = ModelDir::open(temp.path()).unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
        let shown = format!("{err:#}");
        assert!(shown.contains(WEIGHTS_INDEX) && shown.contains(&shard.display().to_string()), "{shown}");
        for (file, expect) in [
            (WEIGHTS_INDEX, "needs the model's model.safetensors"),
            ("tokenizer.json", "needs the model's tokenizer.json"),
            ("config.json", "needs the model's config.json"),
        ] {
            std::fs::remove_file(temp.path().join(file)).unwrap();
            let err = ModelDir::open(temp.path()).unwrap_err();
            assert_eq!(kind_of(&err), Kind::NotFound, "{file}");
            assert!(err.to_string().contains(expect), "{err}");
        }
    }
}
