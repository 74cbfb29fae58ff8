//! `config.json` → the typed GPT-Neo configuration the forward needs.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// Whether a layer's attention sees the whole causal past or only a window of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    Global,
    Local,
}

/// The GPT-Neo hyper-parameters, with `attention_types` expanded to one entry per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct GptNeoConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// The MLP width; `intermediate_size: null` in config.json means 4 · hidden_size.
    pub intermediate_size: usize,
    pub window_size: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_epsilon: f32,
    pub attention_layers: Vec<AttentionKind>,
}

impl GptNeoConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The window of keys a query sees on `layer`: `Some(window_size)` on local layers.
    pub fn window(&self, layer: usize) -> Option<usize> {
        (self.attention_layers[layer] == AttentionKind::Local).then_some(self.window_size)
    }

    /// GPT-Neo-125M's shape (EleutherAI/gpt-neo-125m's config.json).
    pub fn gpt_neo_125m() -> GptNeoConfig {
        GptNeoConfig {
            vocab_size: 50257,
            hidden_size: 768,
            num_layers: 12,
            num_heads: 12,
            intermediate_size: 3072,
            window_size: 256,
            max_position_embeddings: 2048,
            layer_norm_epsilon: 1e-5,
            attention_layers: (0..12)
                .map(|i| if i % 2 == 0 { AttentionKind::Global } else { AttentionKind::Local })
                .collect(),
        }
    }

    /// The config.json transformers would write for this configuration (attention types as
    /// explicit one-layer runs).
    pub fn to_hf_json(&self) -> Value {
        let types: Vec<Value> = self
            .attention_layers
            .iter()
            .map(|k| serde_json::json!([[if *k == AttentionKind::Global { "global" } else { "local" }], 1]))
            .collect();
        serde_json::json!({
            "model_type": "gpt_neo",
            "architectures": ["GPTNeoForCausalLM"],
            "activation_function": "gelu_new",
            "attention_types": types,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "window_size": self.window_size,
            "max_position_embeddings": self.max_position_embeddings,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "attention_dropout": 0.0, "embed_dropout": 0.0, "resid_dropout": 0.0,
            "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": true,
        })
    }

    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<GptNeoConfig> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read {}: the model folder needs the model's config.json", path.display())
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| {
            anyhow!("{} is not valid JSON ({e}); re-download or re-export config.json", path.display())
        })?;
        Self::from_json(&json).with_context(|| format!("{}", path.display()))
    }

    /// Builds the configuration from config.json's content.
    pub fn from_json(json: &Value) -> Result<GptNeoConfig> {
        let activation = string_field(json, "activation_function")?;
        if activation != "gelu_new" {
            bail!("activation_function {activation:?} is not supported: neoprobe implements GPT-Neo's gelu_new only");
        }
        let hidden_size = usize_field(json, "hidden_size")?;
        let num_layers = usize_field(json, "num_layers")?;
        let num_heads = usize_field(json, "num_heads")?;
        let intermediate_size = match json.get("intermediate_size") {
            None => bail!("missing field `intermediate_size` (null means 4 × hidden_size)"),
            Some(Value::Null) => 4 * hidden_size,
            Some(v) => v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
                anyhow!("field `intermediate_size` must be a positive integer or null, found {v}")
            })? as usize,
        };
        let config = GptNeoConfig {
            vocab_size: usize_field(json, "vocab_size")?,
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            window_size: usize_field(json, "window_size")?,
            max_position_embeddings: usize_field(json, "max_position_embeddings")?,
            layer_norm_epsilon: json
                .get("layer_norm_epsilon")
                .ok_or_else(|| anyhow!("missing field `layer_norm_epsilon`"))?
                .as_f64()
                .filter(|e| *e > 0.0)
                .ok_or_else(|| anyhow!("field `layer_norm_epsilon` must be a positive number"))?
                as f32,
            attention_layers: expand_attention_types(
                json.get("attention_types").ok_or_else(|| anyhow!("missing field `attention_types`"))?,
            )?,
        };
        if config.attention_layers.len() != num_layers {
            bail!(
                "attention_types describes {} layers but num_layers is {num_layers}",
                config.attention_layers.len()
            );
        }
        if hidden_size % num_heads != 0 {
            bail!("hidden_size {hidden_size} is not a multiple of num_heads {num_heads}");
        }
        let head_dim = config.head_dim();
        if head_dim % 4 != 0 || head_dim > crate::kernels::MAX_HEAD_DIM {
            bail!(
                "head size {head_dim} (hidden_size / num_heads) is not supported: it must be a multiple of 4, at most {}",
                crate::kernels::MAX_HEAD_DIM
            );
        }
        Ok(config)
    }
}

fn usize_field(json: &Value, name: &str) -> Result<usize> {
    let value = json.get(name).ok_or_else(|| anyhow!("missing field `{name}`"))?;
    value
        .as_u64()
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| anyhow!("field `{name}` must be a positive integer, found {value}"))
}

fn string_field<'a>(json: &'a Value, name: &str) -> Result<&'a str> {
    let value = json.get(name).ok_or_else(|| anyhow!("missing field `{name}`"))?;
    value.as_str().ok_or_else(|| anyhow!("field `{name}` must be a string, found {value}"))
}

/// `[[["global","local"], 6]]` → global, local, global, … (12 layers), as HF's
/// `GPTNeoConfig.expand_attention_types_params`.
fn expand_attention_types(value: &Value) -> Result<Vec<AttentionKind>> {
    let malformed =
        || anyhow!("field `attention_types` must look like [[[\"global\", \"local\"], 6]], found {value}");
    let mut layers = Vec::new();
    for item in value.as_array().ok_or_else(malformed)? {
        let pair = item.as_array().filter(|p| p.len() == 2).ok_or_else(malformed)?;
        let kinds = pair[0].as_array().ok_or_else(malformed)?;
        let repeat = pair[1].as_u64().ok_or_else(malformed)?;
        for _ in 0..repeat {
            for kind in kinds {
                layers.push(match kind.as_str() {
                    Some("global") => AttentionKind::Global,
                    Some("local") => AttentionKind::Local,
                    _ => bail!("unknown attention type {kind} in `attention_types`: GPT-Neo has \"global\" and \"local\""),
                });
            }
        }
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn neo_125m() -> Value {
        json!({
            "activation_function": "gelu_new", "attention_types": [[["global", "local"], 6]],
            "hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": null,
            "window_size": 256, "max_position_embeddings": 2048, "vocab_size": 50257,
            "layer_norm_epsilon": 1e-5
        })
    }

    #[test]
    fn hf_json_round_trips() {
        let config = GptNeoConfig::gpt_neo_125m();
        assert_eq!(GptNeoConfig::from_json(&config.to_hf_json()).unwrap(), config);
        assert_eq!(GptNeoConfig::from_json(&neo_125m()).unwrap(), config);
    }

    #[test]
    fn expands_the_125m_config() {
        let config = GptNeoConfig::from_json(&neo_125m()).unwrap();
        assert_eq!(config.intermediate_size, 3072);
        assert_eq!(config.head_dim(), 64);
        assert_eq!(config.attention_layers.len(), 12);
        assert_eq!(config.window(8), None);
        assert_eq!(config.window(7), Some(256));
        assert_eq!(config.window(0), None);
    }

    #[test]
    fn rejects_other_activations_unknown_attention_and_missing_fields() {
        let mut bad = neo_125m();
        bad["activation_function"] = json!("gelu");
        assert!(GptNeoConfig::from_json(&bad).unwrap_err().to_string().contains("gelu_new"));
        let mut bad = neo_125m();
        bad["attention_types"] = json!([[["global", "sparse"], 6]]);
        assert!(GptNeoConfig::from_json(&bad).unwrap_err().to_string().contains("sparse"));
        let mut bad = neo_125m();
        bad.as_object_mut().unwrap().remove("window_size");
        assert!(GptNeoConfig::from_json(&bad).unwrap_err().to_string().contains("window_size"));
        let mut bad = neo_125m();
        bad["num_layers"] = json!(10);
        assert!(GptNeoConfig::from_json(&bad).unwrap_err().to_string().contains("attention_types"));
    }
}
