//! GPT-Neo: configuration, weights, hook points, and the forward pass on the GPU.

mod batch;
mod config;
mod forward;
mod hooks;
mod loss;
mod weights;

pub use batch::Batch;
pub use config::{AttentionKind, GptNeoConfig};
pub use forward::{
    attention_pattern, attention_pattern_shape, kernel_shapes, Activations, ForwardTimes, GpuModel,
    UNEMBEDDING_CHUNK_ROWS,
};
pub use hooks::{Hook, HookPlan, HookPoint};
pub use loss::{logsumexp, next_token_loss};
pub use weights::{BlockWeights, GptNeoWeights, HostTensor, LayerNormWeights, LinearWeights};

/// The challenge's block, and every command's default block.
pub const DEFAULT_LAYER: usize = 8;
/// The challenge's hook, `blocks.{DEFAULT_LAYER}.mlp.hook_pre`: every command's default hook.
pub const DEFAULT_HOOK: &str = "blocks.8.mlp.hook_pre";

use anyhow::Result;
use std::path::{Path, PathBuf};

/// A local model folder holding `config.json`, `model.safetensors` and `tokenizer.json`.
#[derive(Clone, Debug)]
pub struct ModelDir {
    pub path: PathBuf,
}

impl ModelDir {
    pub fn open(path: &Path) -> Result<ModelDir> {
        if !path.is_dir() {
            return Err(crate::error::not_found(format!(
                "model folder {} does not exist; pass a folder with config.json, model.safetensors and tokenizer.json",
                path.display()
            )));
        }
        Ok(ModelDir { path: path.to_path_buf() })
    }

    pub fn config(&self) -> Result<GptNeoConfig> {
        GptNeoConfig::load(&self.path.join("config.json"))
    }

    /// The weights the forward needs to reach the deepest hook of `plan`.
    pub fn weights(&self, config: &GptNeoConfig, plan: &HookPlan) -> Result<GptNeoWeights> {
        GptNeoWeights::load(&self.path.join("model.safetensors"), config, plan.blocks_needed(config))
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.path.join("tokenizer.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_hook_is_the_default_layers_mlp_expansion() {
        assert_eq!(DEFAULT_HOOK, Hook::block(DEFAULT_LAYER, HookPoint::MlpPre).to_string());
    }
}
