//! Hook points: named places in the forward whose activations can be read back, named as in
//! TransformerLens (`blocks.8.mlp.hook_pre`, …).

use super::GptNeoConfig;
use anyhow::{bail, Result};
use std::fmt;

/// A hook point inside a block, in the order the forward produces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// The residual stream entering the block.
    ResidPre,
    /// `ln_1` output.
    Ln1Normalized,
    /// `q_proj` output, heads not split: `[tokens, hidden]`.
    AttnQ,
    /// `k_proj` output.
    AttnK,
    /// `v_proj` output.
    AttnV,
    /// The heads' attention outputs, merged: the input of `out_proj`.
    AttnZ,
    /// `out_proj` output.
    AttnOut,
    /// Residual stream after attention: `resid_pre + attn_out`.
    ResidMid,
    /// `ln_2` output.
    Ln2Normalized,
    /// `c_fc` output: after the matmul and bias, before GELU (HF `transformer.h.L.mlp.c_fc`).
    MlpPre,
    /// `gelu_new(mlp_pre)`: the input of `c_proj`.
    MlpPost,
    /// `c_proj` output.
    MlpOut,
    /// The residual stream leaving the block.
    ResidPost,
}

impl HookPoint {
    pub const ALL: [HookPoint; 13] = [
        HookPoint::ResidPre,
        HookPoint::Ln1Normalized,
        HookPoint::AttnQ,
        HookPoint::AttnK,
        HookPoint::AttnV,
        HookPoint::AttnZ,
        HookPoint::AttnOut,
        HookPoint::ResidMid,
        HookPoint::Ln2Normalized,
        HookPoint::MlpPre,
        HookPoint::MlpPost,
        HookPoint::MlpOut,
        HookPoint::ResidPost,
    ];

    /// The name after `blocks.{L}.`.
    pub fn suffix(self) -> &'static str {
        match self {
            HookPoint::ResidPre => "hook_resid_pre",
            HookPoint::Ln1Normalized => "ln1.hook_normalized",
            HookPoint::AttnQ => "attn.hook_q",
            HookPoint::AttnK => "attn.hook_k",
            HookPoint::AttnV => "attn.hook_v",
            HookPoint::AttnZ => "attn.hook_z",
            HookPoint::AttnOut => "hook_attn_out",
            HookPoint::ResidMid => "hook_resid_mid",
            HookPoint::Ln2Normalized => "ln2.hook_normalized",
            HookPoint::MlpPre => "mlp.hook_pre",
            HookPoint::MlpPost => "mlp.hook_post",
            HookPoint::MlpOut => "hook_mlp_out",
            HookPoint::ResidPost => "hook_resid_post",
        }
    }
}

/// A place in the forward whose activations `[tokens, width]` can be read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Block {
        layer: usize,
        point: HookPoint,
    },
    /// `ln_f` output, after the last block.
    LnFinal,
}

impl Hook {
    pub fn block(layer: usize, point: HookPoint) -> Hook {
        Hook::Block { layer, point }
    }

    /// Parses a TransformerLens name (`blocks.8.mlp.hook_pre`, `ln_final.hook_normalized`) or the
    /// HF module path `transformer.h.{L}.mlp.c_fc` (= `blocks.{L}.mlp.hook_pre`), checking the
    /// block index against the model.
    pub fn parse(name: &str, config: &GptNeoConfig) -> Result<Hook> {
        let hook = Self::parse_name(name)?;
        if let Hook::Block { layer, .. } = hook {
            if layer >= config.num_layers {
                bail!(
                    "hook {name:?} names block {layer} but the model has {} blocks (0 to {})",
                    config.num_layers,
                    config.num_layers - 1
                );
            }
        }
        Ok(hook)
    }

    fn parse_name(name: &str) -> Result<Hook> {
        if name == "ln_final.hook_normalized" {
            return Ok(Hook::LnFinal);
        }
        let block_rest = |prefix: &str| -> Option<(usize, &str)> {
            let rest = name.strip_prefix(prefix)?;
            let (layer, rest) = rest.split_once('.')?;
            Some((layer.parse().ok()?, rest))
        };
        if let Some((layer, rest)) = block_rest("blocks.") {
            if let Some(point) = HookPoint::ALL.into_iter().find(|p| p.suffix() == rest) {
                return Ok(Hook::block(layer, point));
            }
        }
        if let Some((layer, "mlp.c_fc")) = block_rest("transformer.h.") {
            return Ok(Hook::block(layer, HookPoint::MlpPre));
        }
        bail!("unknown hook {name:?}; valid forms: {}", Self::valid_forms())
    }

    /// Every accepted hook name, with `{L}` for the block index.
    pub fn valid_forms() -> String {
        let mut forms: Vec<String> =
            HookPoint::ALL.iter().map(|p| format!("blocks.{{L}}.{}", p.suffix())).collect();
        forms.push("ln_final.hook_normalized".into());
        forms.push("transformer.h.{L}.mlp.c_fc (= blocks.{L}.mlp.hook_pre)".into());
        forms.join(", ")
    }

    /// Floats per token at this hook.
    pub fn width(self, config: &GptNeoConfig) -> usize {
        match self {
            Hook::Block { point: HookPoint::MlpPre | HookPoint::MlpPost, .. } => config.intermediate_size,
            _ => config.hidden_size,
        }
    }

    /// The blocks the forward must run to reach this hook.
    pub fn blocks_needed(self, config: &GptNeoConfig) -> usize {
        match self {
            Hook::Block { layer, .. } => layer + 1,
            Hook::LnFinal => config.num_layers,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Hook::Block { layer, point } => write!(f, "blocks.{layer}.{}", point.suffix()),
            Hook::LnFinal => write!(f, "ln_final.hook_normalized"),
        }
    }
}

/// The hooks a forward must read back, and where it may stop.
#[derive(Clone, Debug)]
pub struct HookPlan {
    hooks: Vec<Hook>,
}

impl HookPlan {
    pub fn new(hooks: &[Hook]) -> Result<HookPlan> {
        if hooks.is_empty() {
            bail!("no hook requested");
        }
        let mut hooks = hooks.to_vec();
        hooks.sort();
        hooks.dedup();
        Ok(HookPlan { hooks })
    }

    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    pub fn wants(&self, hook: Hook) -> bool {
        self.hooks.binary_search(&hook).is_ok()
    }

    /// The last hook the forward produces: nothing after it needs computing.
    pub fn deepest(&self) -> Hook {
        *self.hooks.last().expect("a plan has at least one hook")
    }

    pub fn blocks_needed(&self, config: &GptNeoConfig) -> usize {
        self.deepest().blocks_needed(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GptNeoConfig {
        GptNeoConfig {
            vocab_size: 10,
            hidden_size: 8,
            num_layers: 12,
            num_heads: 2,
            intermediate_size: 32,
            window_size: 4,
            max_position_embeddings: 16,
            layer_norm_epsilon: 1e-5,
            attention_layers: vec![super::super::AttentionKind::Global; 12],
        }
    }

    #[test]
    fn every_name_round_trips() {
        for layer in [0, 8, 11] {
            for point in HookPoint::ALL {
                let hook = Hook::block(layer, point);
                assert_eq!(Hook::parse(&hook.to_string(), &config()).unwrap(), hook);
            }
        }
        assert_eq!(Hook::parse("ln_final.hook_normalized", &config()).unwrap(), Hook::LnFinal);
    }

    #[test]
    fn c_fc_is_an_alias_of_hook_pre() {
        assert_eq!(
            Hook::parse("transformer.h.8.mlp.c_fc", &config()).unwrap(),
            Hook::block(8, HookPoint::MlpPre)
        );
    }

    #[test]
    fn bad_names_list_the_valid_forms_and_blocks_are_checked() {
        let err = Hook::parse("blocks.8.mlp.hook_middle", &config()).unwrap_err().to_string();
        assert!(err.contains("blocks.{L}.mlp.hook_pre") && err.contains("ln_final.hook_normalized"), "{err}");
        let err = Hook::parse("blocks.12.mlp.hook_pre", &config()).unwrap_err().to_string();
        assert!(err.contains("12 blocks"), "{err}");
    }

    #[test]
    fn plan_orders_hooks_as_the_forward_produces_them() {
        let plan = HookPlan::new(&[
            Hook::block(8, HookPoint::MlpPre),
            Hook::block(8, HookPoint::ResidPre),
            Hook::block(2, HookPoint::ResidPost),
        ])
        .unwrap();
        assert_eq!(plan.deepest(), Hook::block(8, HookPoint::MlpPre));
        assert_eq!(plan.blocks_needed(&config()), 9);
        let plan = HookPlan::new(&[Hook::LnFinal, Hook::block(11, HookPoint::ResidPost)]).unwrap();
        assert_eq!(plan.deepest(), Hook::LnFinal);
    }
}
