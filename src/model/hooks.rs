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
    /// The attention probabilities, per sequence `[heads, query, key]` (computed on the host from
    /// the GPU's q and k: the attention kernels never store them).
    AttnPattern,
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
    pub const ALL: [HookPoint; 14] = [
        HookPoint::ResidPre,
        HookPoint::Ln1Normalized,
        HookPoint::AttnQ,
        HookPoint::AttnK,
        HookPoint::AttnV,
        HookPoint::AttnPattern,
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
            HookPoint::AttnPattern => "attn.hook_pattern",
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

/// A place in the forward whose activations `[tokens, width]` can be read back (the attention
/// pattern is laid out per sequence instead: `Hook::shape`). The order is the forward's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// The token embeddings, `wte[ids]`.
    Embed,
    /// The position embeddings, `wpe[positions]`.
    PosEmbed,
    Block {
        layer: usize,
        point: HookPoint,
    },
    /// `ln_f` output, after the last block.
    LnFinal,
    /// `ln_f` output times the tied unembedding `wteᵀ`: `[tokens, vocab]`.
    Logits,
}

impl Hook {
    pub fn block(layer: usize, point: HookPoint) -> Hook {
        Hook::Block { layer, point }
    }

    /// The block a hook is in (`None` for the embeddings, ln_f and the logits).
    pub fn layer(self) -> Option<usize> {
        match self {
            Hook::Block { layer, .. } => Some(layer),
            _ => None,
        }
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
        if let Some(hook) = Self::MODEL_HOOKS.iter().find(|h| h.to_string() == name) {
            return Ok(*hook);
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

    /// The hooks outside the blocks.
    const MODEL_HOOKS: [Hook; 4] = [Hook::Embed, Hook::PosEmbed, Hook::LnFinal, Hook::Logits];

    /// Every accepted hook name, with `{L}` for the block index.
    pub fn valid_forms() -> String {
        let mut forms: Vec<String> = Self::MODEL_HOOKS[..2].iter().map(Hook::to_string).collect();
        forms.extend(HookPoint::ALL.iter().map(|p| format!("blocks.{{L}}.{}", p.suffix())));
        forms.extend(Self::MODEL_HOOKS[2..].iter().map(Hook::to_string));
        forms.push("transformer.h.{L}.mlp.c_fc (= blocks.{L}.mlp.hook_pre)".into());
        forms.push("patterns with * (blocks.*.mlp.hook_pre, blocks.8.*)".into());
        forms.join(", ")
    }

    /// Every hook point of a model of this configuration, in the forward's order.
    pub fn all(config: &GptNeoConfig) -> Vec<Hook> {
        let mut hooks = vec![Hook::Embed, Hook::PosEmbed];
        for layer in 0..config.num_layers {
            hooks.extend(HookPoint::ALL.map(|point| Hook::block(layer, point)));
        }
        hooks.extend([Hook::LnFinal, Hook::Logits]);
        hooks
    }

    /// The hooks a name or a pattern names: `*` matches any run of characters
    /// (`blocks.*.mlp.hook_pre`, `blocks.8.*`). A pattern that matches nothing is an error that
    /// lists the valid forms.
    pub fn expand(pattern: &str, config: &GptNeoConfig) -> Result<Vec<Hook>> {
        if !pattern.contains('*') {
            return Ok(vec![Hook::parse(pattern, config)?]);
        }
        let hooks: Vec<Hook> =
            Hook::all(config).into_iter().filter(|h| glob(pattern, &h.to_string())).collect();
        if hooks.is_empty() {
            bail!(
                "hook pattern {pattern:?} matches no hook of this model; valid forms: {}",
                Self::valid_forms()
            );
        }
        Ok(hooks)
    }

    /// Floats per token at this hook (the attention pattern: per query, its keys of every head
    /// up to the longest sequence; see `shape`).
    pub fn width(self, config: &GptNeoConfig) -> usize {
        match self {
            Hook::Block { point: HookPoint::MlpPre | HookPoint::MlpPost, .. } => config.intermediate_size,
            Hook::Logits => config.vocab_size,
            _ => config.hidden_size,
        }
    }

    /// The blocks the forward must run to reach this hook.
    pub fn blocks_needed(self, config: &GptNeoConfig) -> usize {
        match self {
            Hook::Embed | Hook::PosEmbed => 0,
            Hook::Block { layer, .. } => layer + 1,
            Hook::LnFinal | Hook::Logits => config.num_layers,
        }
    }

    /// Whether the values are one row per token (all but the attention pattern).
    pub fn per_token(self) -> bool {
        !matches!(self, Hook::Block { point: HookPoint::AttnPattern, .. })
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else { return false };
            (0..=tail.len()).filter(|&i| tail.is_char_boundary(i)).any(|i| glob(rest, &tail[i..]))
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Hook::Embed => write!(f, "hook_embed"),
            Hook::PosEmbed => write!(f, "hook_pos_embed"),
            Hook::Block { layer, point } => write!(f, "blocks.{layer}.{}", point.suffix()),
            Hook::LnFinal => write!(f, "ln_final.hook_normalized"),
            Hook::Logits => write!(f, "logits"),
        }
    }
}

/// The hooks a forward must read back, and where it may stop.
#[derive(Clone, Debug)]
pub struct HookPlan {
    hooks: Vec<Hook>,
    /// What the forward changes on its way (none: it only reads).
    interventions: super::Interventions,
    /// The logits at each sequence's last token only (`[sequences, vocab]`), not at every token.
    last_token_logits: bool,
}

impl HookPlan {
    pub fn new(hooks: &[Hook]) -> Result<HookPlan> {
        if hooks.is_empty() {
            bail!("no hook requested");
        }
        let mut hooks = hooks.to_vec();
        hooks.sort();
        hooks.dedup();
        Ok(HookPlan { hooks, interventions: super::Interventions::default(), last_token_logits: false })
    }

    /// The plan with the logits computed and read at each sequence's last token only: the
    /// next-token distribution after the whole sequence, at a fraction of the unembedding's cost.
    pub fn with_last_token_logits(mut self) -> HookPlan {
        self.last_token_logits = true;
        self
    }

    pub fn last_token_logits(&self) -> bool {
        self.last_token_logits
    }

    /// The plan with `interventions` applied on the way (those past the deepest hook change
    /// nothing that is read back, and are not run).
    pub fn with_interventions(mut self, interventions: super::Interventions) -> HookPlan {
        self.interventions = interventions;
        self
    }

    pub fn interventions(&self) -> &super::Interventions {
        &self.interventions
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
        for hook in Hook::MODEL_HOOKS {
            assert_eq!(Hook::parse(&hook.to_string(), &config()).unwrap(), hook);
        }
    }

    #[test]
    fn patterns_expand_in_the_forwards_order() {
        let config = config();
        let mlp = Hook::expand("blocks.*.mlp.hook_pre", &config).unwrap();
        assert_eq!(mlp, (0..12).map(|l| Hook::block(l, HookPoint::MlpPre)).collect::<Vec<_>>());
        let block = Hook::expand("blocks.8.*", &config).unwrap();
        assert_eq!(block, HookPoint::ALL.map(|p| Hook::block(8, p)).to_vec());
        assert_eq!(Hook::expand("*", &config).unwrap(), Hook::all(&config));
        assert_eq!(Hook::expand("logits", &config).unwrap(), vec![Hook::Logits]);
        assert_eq!(Hook::expand("hook_*", &config).unwrap(), vec![Hook::Embed, Hook::PosEmbed]);
        let err = Hook::expand("blocks.*.mlp.hook_middle", &config).unwrap_err().to_string();
        assert!(err.contains("matches no hook") && err.contains("valid forms"), "{err}");
        assert!(!glob("blocks.1*", "blocks.2.mlp.hook_pre"));
        assert!(glob("blocks.1*", "blocks.11.mlp.hook_pre"));
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
