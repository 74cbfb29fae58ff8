//! The challenge's result as one value: [`ChallengeSummary`], what `challenge --json` prints
//! (`serde_json::to_value(&summary)` gives the same object) and what a caller of the library
//! reads without parsing any file.

use super::causal::CausalTest;
use super::control::SingleTokenControl;
use super::findings::{Findings, Preferring};
use super::permutation::PermutationTest;
use super::stats::csv_name;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::path::PathBuf;

/// The summary of a challenge run. Its keys, in this order, are those of `challenge --json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChallengeSummary {
    /// The shape of the activations array (`[C, n, width]` or `[words, width]`).
    pub shape: Vec<usize>,
    /// Every category's name, in order.
    pub categories: Vec<String>,
    /// Neurons with BH q < α, and with Bonferroni p < α, in the test of the first two categories.
    pub bh_count: usize,
    pub bonferroni_count: usize,
    /// The counts against label shuffles; `None` (`null`) without shuffles.
    pub permutation: Option<PermutationSummary>,
    /// The same test on single-token words only.
    pub single_token_control: Option<SingleTokenSummary>,
    /// The causal test; `None` (`null`) with `--no-causal`.
    pub causal: Option<CausalSummary>,
    /// The top neurons preferring each of the first two categories, keyed by the category's name
    /// (a JSON object with two keys, first category first).
    #[serde(serialize_with = "as_object")]
    pub top_neurons: Vec<(String, Vec<Preferring>)>,
    /// Every file written, at its final place.
    pub files: Vec<String>,
    /// What ran, on what, and how long each phase took.
    #[serde(flatten)]
    pub run: RunDetails,
}

/// The permutation test, flat: the count under shuffled labels of each correction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PermutationSummary {
    /// Shuffles and the generator's seed.
    pub n: usize,
    pub seed: u64,
    pub bh_null_mean: f64,
    pub bh_null_p95: f64,
    pub bh_p_value: f64,
    pub bonferroni_null_mean: f64,
    pub bonferroni_null_p95: f64,
    pub bonferroni_p_value: f64,
}

/// The single-token control: how many single-token words each tested category has, and the
/// counts (`None` when a category has fewer than two such words).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SingleTokenSummary {
    pub words: [usize; 2],
    pub bh_count: Option<usize>,
    pub bonferroni_count: Option<usize>,
}

/// The causal test as `challenge --json` shows it:
///
/// ```text
/// {"n_neurons", "random_sets", "mode", "hook", "seed",
///  "verb_set": {"neurons", "effect_verbs", "effect_nouns", "difference", "p_value"},
///  "noun_set": {…}, "random": {"mean_effect", "p95", "effect_verbs", "effect_nouns"}}
/// ```
///
/// A set's key is its category's name (as in neurons.csv) with one final `s` dropped, then
/// `_set`; the effect keys are `effect_` and each category's name. Effects are mean
/// KL(p_clean ‖ p_ablated) in nats; `difference` is the effect on the set's own category minus
/// that on the other; `random` is `null` without random sets, and so is every `p_value`.
#[derive(Clone, Debug, PartialEq)]
pub struct CausalSummary {
    pub test: CausalTest,
}

impl Serialize for CausalSummary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = &self.test;
        let names: Vec<String> = t.categories.iter().map(|n| csv_name(n)).collect();
        let set_keys = set_keys(&names[..2]);
        let effects = |values: &[f64]| -> serde_json::Map<String, serde_json::Value> {
            names.iter().zip(values).map(|(n, v)| (format!("effect_{n}"), serde_json::json!(v))).collect()
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("n_neurons", &t.n_neurons)?;
        map.serialize_entry("random_sets", &t.random.len())?;
        map.serialize_entry("mode", &t.ablation.to_string())?;
        map.serialize_entry("hook", &t.hook.to_string())?;
        map.serialize_entry("seed", &t.seed)?;
        for (key, set) in set_keys.iter().zip(&t.sets) {
            let mut value = serde_json::Map::new();
            value.insert("neurons".into(), serde_json::json!(set.neurons));
            value.extend(effects(&set.effects));
            value.insert("difference".into(), serde_json::json!(set.difference));
            value.insert("p_value".into(), serde_json::json!(set.p_value));
            map.serialize_entry(key, &value)?;
        }
        let random = t.random_summary().map(|(mean, p95)| {
            let mut value = serde_json::Map::new();
            value.insert("mean_effect".into(), serde_json::json!(mean));
            value.insert("p95".into(), serde_json::json!(p95));
            let means: Vec<f64> = (0..names.len()).filter_map(|c| t.random_mean(c)).collect();
            value.extend(effects(&means));
            value
        });
        map.serialize_entry("random", &random)?;
        map.end()
    }
}

/// `verbs`, `nouns` → `verb_set`, `noun_set`: one final `s` dropped (not of `ss`), unless that
/// makes the two keys equal.
fn set_keys(names: &[String]) -> Vec<String> {
    let singular = |n: &str| match n.strip_suffix('s') {
        Some(stem) if !stem.is_empty() && !stem.ends_with('s') => stem.to_string(),
        _ => n.to_string(),
    };
    let keys: Vec<String> = names.iter().map(|n| format!("{}_set", singular(n))).collect();
    if keys.len() == 2 && keys[0] == keys[1] {
        return names.iter().map(|n| format!("{n}_set")).collect();
    }
    keys
}

/// What ran: the model as named, the revision asked of the hub and the commit it resolved to
/// (`None` for a local folder), the hook read, the adapter and kernel variant, and the time of
/// each phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunDetails {
    pub model: String,
    pub revision: Option<String>,
    pub commit: Option<String>,
    pub hook: String,
    pub adapter: String,
    pub variant: String,
    pub seconds: PhaseSeconds,
}

/// Wall-clock seconds of each phase: finding or fetching the model files, loading the weights,
/// opening the GPU and compiling the kernels, uploading, the forward, and the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PhaseSeconds {
    pub fetch: f64,
    pub load: f64,
    pub pipelines: f64,
    pub upload: f64,
    pub forward: f64,
    /// The causal test's ablated runs (0 without it).
    pub causal: f64,
    pub total: f64,
}

impl ChallengeSummary {
    /// The summary of the findings, the checks that were run, the files written and the run.
    pub fn new(
        shape: Vec<usize>,
        findings: &Findings,
        permutation: Option<&PermutationTest>,
        single_token: Option<&SingleTokenControl>,
        causal: Option<&CausalTest>,
        files: &[PathBuf],
        run: RunDetails,
    ) -> ChallengeSummary {
        let f = findings;
        ChallengeSummary {
            shape,
            categories: f.category_names.clone(),
            bh_count: f.n_sig_bh,
            bonferroni_count: f.n_sig_bonferroni,
            permutation: permutation.map(|t| PermutationSummary {
                n: t.n,
                seed: t.seed,
                bh_null_mean: t.bh.null_mean,
                bh_null_p95: t.bh.null_p95,
                bh_p_value: t.bh.p_value,
                bonferroni_null_mean: t.bonferroni.null_mean,
                bonferroni_null_p95: t.bonferroni.null_p95,
                bonferroni_p_value: t.bonferroni.p_value,
            }),
            single_token_control: single_token.map(|c| SingleTokenSummary {
                words: c.words,
                bh_count: c.counts.map(|c| c.bh),
                bonferroni_count: c.counts.map(|c| c.bonferroni),
            }),
            causal: causal.map(|test| CausalSummary { test: test.clone() }),
            top_neurons: vec![(f.name(0), f.top_first.clone()), (f.name(1), f.top_second.clone())],
            files: files.iter().map(|p| p.display().to_string()).collect(),
            run,
        }
    }
}

/// Pairs as a JSON object, in their order.
fn as_object<S: Serializer>(pairs: &[(String, Vec<Preferring>)], serializer: S) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (key, value) in pairs {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::causal::{AblatedSet, Ablation};
    use crate::challenge::control::single_token_control;
    use crate::challenge::findings::findings;
    use crate::challenge::permutation::{permutation_test, Counts};
    use crate::challenge::stats::neuron_stats;
    use crate::challenge::synthetic;
    use serde_json::json;

    fn run() -> RunDetails {
        RunDetails {
            model: "fixtures/tiny-neo".into(),
            revision: None,
            commit: None,
            hook: "blocks.8.mlp.hook_pre".into(),
            adapter: "Test Adapter".into(),
            variant: "tiled".into(),
            seconds: PhaseSeconds { total: 2.0, ..PhaseSeconds::default() },
        }
    }

    /// The synthetic activations with their categories renamed.
    fn summary(names: [&str; 2]) -> ChallengeSummary {
        let mut acts = synthetic::activations();
        for (category, name) in acts.categories.iter_mut().zip(names) {
            category.name = name.to_string();
        }
        let stats = neuron_stats(&acts).unwrap();
        let f = findings(&acts, &stats);
        let observed = Counts { bh: f.n_sig_bh, bonferroni: f.n_sig_bonferroni };
        let permutation = permutation_test(&acts, observed, 20, 3);
        let control = single_token_control(&acts, &[1; 20]).unwrap();
        let files = [PathBuf::from("out/neurons.csv")];
        ChallengeSummary::new(
            vec![2, 10, 50],
            &f,
            Some(&permutation),
            Some(&control),
            Some(&causal()),
            &files,
            run(),
        )
    }

    #[test]
    fn top_neurons_are_keyed_by_the_category_names_in_order() {
        let summary = summary(["motion", "agents"]);
        let value = serde_json::to_value(&summary).unwrap();
        let top = value["top_neurons"].as_object().unwrap();
        let mut keys: Vec<&String> = top.keys().collect();
        keys.sort();
        assert_eq!(keys, ["agents", "motion"]);
        assert_eq!(top["motion"][0]["neuron"], json!(summary.top_neurons[0].1[0].neuron));
        assert!(
            top["motion"][0]["t"].as_f64().unwrap() > 0.0 && top["agents"][0]["t"].as_f64().unwrap() < 0.0
        );
        // As printed, the first category comes first (a Value sorts its keys, the text does not).
        let text = serde_json::to_string(&summary).unwrap();
        assert!(text.find("\"motion\":[").unwrap() < text.find("\"agents\":[").unwrap(), "{text}");
        assert!(!text.contains("top_verb_neurons") && !text.contains("top_noun_neurons"), "{text}");
    }

    #[test]
    fn every_key_keeps_its_name() {
        let value = serde_json::to_value(summary(["verbs", "nouns"])).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        let mut expected = [
            "shape",
            "categories",
            "bh_count",
            "bonferroni_count",
            "permutation",
            "single_token_control",
            "causal",
            "top_neurons",
            "files",
            "model",
            "revision",
            "commit",
            "hook",
            "adapter",
            "variant",
            "seconds",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(value["bh_count"], 3);
        assert_eq!(value["categories"], json!(["verbs", "nouns"]));
        assert_eq!(value["permutation"]["n"], 20);
        assert_eq!(value["permutation"]["bh_p_value"].as_f64().unwrap(), 1.0 / 21.0);
        assert_eq!(
            value["single_token_control"],
            json!({"words": [10, 10], "bh_count": 3, "bonferroni_count": 3})
        );
        assert_eq!(value["files"], json!(["out/neurons.csv"]));
        assert_eq!(value["commit"], serde_json::Value::Null);
        assert_eq!(value["seconds"]["total"], 2.0);
        let neuron = &value["top_neurons"]["verbs"][0];
        let keys: Vec<&String> = neuron.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["cohen_d", "mean_other", "mean_preferred", "neuron", "p_bonferroni", "q_bh", "t", "top_words"]
        );
        assert_eq!(neuron["top_words"][0]["word"], synthetic::TOP_VERB_WORD);
        assert!(neuron["top_words"][0]["value"].is_f64());
    }

    /// A causal test with made-up effects: 2 neurons per set, 3 random sets.
    fn causal() -> CausalTest {
        let set = |preferring: usize, effects: Vec<f64>, p| AblatedSet {
            preferring,
            neurons: vec![preferring, 10 + preferring],
            difference: effects[preferring] - effects[1 - preferring],
            effects,
            p_value: Some(p),
            word_effects: vec![],
        };
        CausalTest {
            hook: crate::model::Hook::block(8, crate::model::HookPoint::MlpPost),
            ablation: Ablation::Zero,
            n_neurons: 2,
            seed: 5,
            categories: vec!["verbs".into(), "nouns".into()],
            words: vec![],
            sets: [set(0, vec![0.5, 0.25], 0.25), set(1, vec![0.125, 0.375], 0.5)],
            random: vec![vec![0.0, 0.0], vec![0.25, 0.5], vec![0.5, 0.25]],
            random_all: vec![0.0, 0.375, 0.375],
        }
    }

    #[test]
    fn the_causal_test_has_the_documented_keys() {
        let value = serde_json::to_value(summary(["verbs", "nouns"])).unwrap();
        assert_eq!(
            value["causal"],
            json!({
                "n_neurons": 2, "random_sets": 3, "mode": "zero", "hook": "blocks.8.mlp.hook_post", "seed": 5,
                "verb_set": {"neurons": [0, 10], "effect_verbs": 0.5, "effect_nouns": 0.25, "difference": 0.25, "p_value": 0.25},
                "noun_set": {"neurons": [1, 11], "effect_verbs": 0.125, "effect_nouns": 0.375, "difference": 0.25, "p_value": 0.5},
                "random": {"mean_effect": 0.25, "p95": 0.375, "effect_verbs": 0.25, "effect_nouns": 0.25},
            })
        );
        let mut test = causal();
        test.categories = vec!["motion".into(), "glass".into()];
        let value = serde_json::to_value(CausalSummary { test }).unwrap();
        assert!(
            value["motion_set"]["effect_glass"].is_f64() && value["glass_set"]["effect_motion"].is_f64(),
            "{value}"
        );
        assert_eq!(set_keys(&["noun".into(), "nouns".into()]), ["noun_set", "nouns_set"]);
    }
}
