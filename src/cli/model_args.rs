//! Which model a command runs: one set of flags for every command that loads a model.

use clap::Args;
use neoprobe::engine::ModelSource;
use neoprobe::hub::DEFAULT_MODEL;
use std::path::PathBuf;

#[derive(Args)]
pub struct ModelArgs {
    /// Model id on the Hugging Face hub, fetched into the HF cache (HF_HOME, HF_ENDPOINT,
    /// HF_HUB_OFFLINE and HF_TOKEN are honoured).
    #[arg(long, value_name = "ID", default_value = DEFAULT_MODEL, conflicts_with = "model_dir")]
    pub model: String,
    /// Commit, branch or tag on the hub [default: the pinned commit
    /// 21def0189f5705e2521767faed922f1f15e7d7db for the default model, main for any other].
    #[arg(long, value_name = "REV", conflicts_with = "model_dir")]
    pub revision: Option<String>,
    /// Local model folder with config.json, model.safetensors (or a sharded
    /// model.safetensors.index.json and its shards) and tokenizer.json; no network.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
}

impl ModelArgs {
    pub fn source(self) -> ModelSource {
        match self.model_dir {
            Some(dir) => ModelSource::Dir(dir),
            None => ModelSource::Hub { id: self.model, revision: self.revision },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_names_the_pinned_commit() {
        let source = include_str!("model_args.rs");
        assert!(source.contains(neoprobe::hub::DEFAULT_REVISION));
    }
}
