//! The challenge's causal test: does ablating the neurons the t-test ranks highest change what
//! the model predicts, and more for their own category's words than for the other's?
//!
//! After the t-tests on `blocks.L.mlp.hook_pre`, the N neurons with the largest t (preferring the
//! first category) and the N with the smallest (preferring the second) are ablated at
//! `blocks.L.mlp.hook_post`, the GELU output that c_proj reads: zeroed, or set to their mean
//! over every token of the challenge's words. Each word then runs through the rest of the model,
//! and its effect is KL(p_clean ‖ p_ablated) of the next-token distribution after its last token.
//! The null: R sets of N neurons of the same block drawn at random, ablated the same way. A set's
//! difference is its mean effect on its own category's words minus that on the other's; its
//! p-value, one-sided, is (1 + random sets whose difference in the same direction is at least as
//! large) / (R + 1).
//!
//! Only what an ablation can change is recomputed: every ablated run resumes at block L from the
//! clean run's residual stream, the runs of many sets share a batch (each set's intervention
//! limited to its own copy of the words), and the logits are computed at each word's last token
//! only.

use super::stats::{quantile, NeuronStats};
use crate::batching::{BatchLimits, ResumeAt, Streamer};
use crate::engine::Engine;
use crate::model::{
    logsumexp, Action, Activations, Batch, Hook, HookPlan, HookPoint, Intervention, Interventions,
};
use crate::notes::Notes;
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use std::fmt;
use std::str::FromStr;

/// Neurons per ablated set unless told otherwise.
pub const DEFAULT_CAUSAL_NEURONS: usize = 10;
/// Random sets of the null on a GPU unless told otherwise.
pub const GPU_RANDOM_SETS: usize = 100;
/// Random sets of the null on a CPU driver unless told otherwise: as many as keep the whole
/// challenge within its time target there (bench/RESULTS.md has the measurement).
pub const CPU_RANDOM_SETS: usize = 2;

/// How the chosen neurons are ablated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ablation {
    /// Set to zero.
    Zero,
    /// Set to the neuron's mean over every token of the challenge's words.
    Mean,
}

impl fmt::Display for Ablation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Ablation::Zero => "zero",
            Ablation::Mean => "mean",
        })
    }
}

impl FromStr for Ablation {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Ablation> {
        match text {
            "zero" => Ok(Ablation::Zero),
            "mean" => Ok(Ablation::Mean),
            _ => bail!("--causal-ablation {text:?} is not a kind of ablation; use zero or mean"),
        }
    }
}

/// What the causal test is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct CausalArgs {
    /// Neurons per set.
    pub n_neurons: usize,
    /// Random sets of the null; `None`: [`GPU_RANDOM_SETS`] on a GPU, [`CPU_RANDOM_SETS`] on a
    /// CPU driver.
    pub random_sets: Option<usize>,
    pub ablation: Ablation,
}

impl Default for CausalArgs {
    fn default() -> CausalArgs {
        CausalArgs { n_neurons: DEFAULT_CAUSAL_NEURONS, random_sets: None, ablation: Ablation::Zero }
    }
}

impl CausalArgs {
    /// Checks the numbers against the hook's `width` before any GPU work.
    pub fn check(&self, width: usize) -> Result<()> {
        if self.n_neurons == 0 {
            bail!("--causal-neurons must be at least 1 (or pass --no-causal to skip the causal test)");
        }
        if self.n_neurons > width / 2 {
            bail!(
                "--causal-neurons {} is more than half of the hook's {width} neurons, so the two sets would overlap; use at most {}",
                self.n_neurons,
                width / 2
            );
        }
        Ok(())
    }

    /// The random sets to draw on `engine`'s adapter.
    pub fn random_sets_for(&self, engine: &Engine) -> usize {
        let on_cpu = engine.gpu.info.device_type == wgpu::DeviceType::Cpu;
        self.random_sets.unwrap_or(if on_cpu { CPU_RANDOM_SETS } else { GPU_RANDOM_SETS })
    }
}

/// What the clean run hands the causal test, word by word: where the ablated runs resume and
/// what they are compared with.
pub struct CleanWords {
    layer: usize,
    /// Each word's rows of `blocks.L.hook_resid_pre`, `[tokens, hidden]`.
    resid: Vec<Vec<f32>>,
    /// Each word's logits after its last token, their log-sum-exp, and the probabilities.
    logits: Vec<Vec<f32>>,
    log_sum_exp: Vec<f64>,
    probs: Vec<Vec<f32>>,
    /// Per neuron: the sum of `blocks.L.mlp.hook_post` over every token read, and how many.
    post_sum: Vec<f64>,
    post_tokens: usize,
}

impl CleanWords {
    pub fn new(layer: usize) -> CleanWords {
        CleanWords {
            layer,
            resid: Vec::new(),
            logits: Vec::new(),
            log_sum_exp: Vec::new(),
            probs: Vec::new(),
            post_sum: Vec::new(),
            post_tokens: 0,
        }
    }

    /// The hooks the clean run must read for the test (with the logits at last tokens only).
    pub fn hooks(layer: usize) -> [Hook; 3] {
        [Hook::block(layer, HookPoint::ResidPre), Hook::block(layer, HookPoint::MlpPost), Hook::Logits]
    }

    /// Takes what the test needs from one batch of the clean run.
    pub fn add_batch(&mut self, batch: &Batch, acts: &mut Activations) -> Result<()> {
        let [resid_hook, post_hook, _] = CleanWords::hooks(self.layer);
        let resid = acts.take(resid_hook).context("the clean run read no residual stream")?;
        let post = acts.take(post_hook).context("the clean run read no hook_post")?;
        let logits = acts.take(Hook::Logits).context("the clean run read no logits")?;
        let (n, seqs) = (batch.n_tokens(), batch.n_sequences());
        let (hidden, width, vocab) = (resid.len() / n, post.len() / n, logits.len() / seqs);
        for s in 0..seqs {
            let range = batch.sequence(s);
            self.resid.push(resid[range.start * hidden..range.end * hidden].to_vec());
            self.push_logits(logits[s * vocab..(s + 1) * vocab].to_vec());
        }
        self.post_sum.resize(width, 0.0);
        for row in post.chunks_exact(width) {
            for (sum, &v) in self.post_sum.iter_mut().zip(row) {
                *sum += v as f64;
            }
        }
        self.post_tokens += n;
        Ok(())
    }

    fn push_logits(&mut self, row: Vec<f32>) {
        let lse = logsumexp(&row);
        self.probs.push(row.iter().map(|&x| (x as f64 - lse).exp() as f32).collect());
        self.log_sum_exp.push(lse);
        self.logits.push(row);
    }

    /// Each neuron's mean of `hook_post` over every token of the words.
    fn means(&self) -> Vec<f32> {
        self.post_sum.iter().map(|s| (s / self.post_tokens as f64) as f32).collect()
    }
}

/// An ablated set of neurons and what it did.
#[derive(Clone, Debug, PartialEq)]
pub struct AblatedSet {
    /// The category its neurons prefer (0 or 1).
    pub preferring: usize,
    /// Ascending.
    pub neurons: Vec<usize>,
    /// The mean effect (KL, nats) on each category's words.
    pub effects: Vec<f64>,
    /// The mean effect on its own category's words minus that on the other's.
    pub difference: f64,
    /// Against the random sets; `None` without any.
    pub p_value: Option<f64>,
    /// Every word's effect, in the challenge's word order.
    pub word_effects: Vec<f64>,
}

/// The causal test's result.
#[derive(Clone, Debug, PartialEq)]
pub struct CausalTest {
    /// Where the neurons were ablated (`blocks.L.mlp.hook_post`).
    pub hook: Hook,
    pub ablation: Ablation,
    pub n_neurons: usize,
    /// The generator's seed of the random sets.
    pub seed: u64,
    pub categories: Vec<String>,
    /// Every word, categories in order.
    pub words: Vec<String>,
    /// The sets preferring the first and the second category.
    pub sets: [AblatedSet; 2],
    /// Per random set: the mean effect on each category's words.
    pub random: Vec<Vec<f64>>,
    /// Per random set: the mean effect on every word.
    pub random_all: Vec<f64>,
}

impl CausalTest {
    /// The mean over the random sets of their mean effect on every word, and its 95th
    /// percentile; `None` without random sets.
    pub fn random_summary(&self) -> Option<(f64, f64)> {
        if self.random_all.is_empty() {
            return None;
        }
        let mean = self.random_all.iter().sum::<f64>() / self.random_all.len() as f64;
        Some((mean, quantile(&self.random_all, 0.95)))
    }

    /// The mean over the random sets of their mean effect on category `c`'s words.
    pub fn random_mean(&self, c: usize) -> Option<f64> {
        (!self.random.is_empty())
            .then(|| self.random.iter().map(|r| r[c]).sum::<f64>() / self.random.len() as f64)
    }
}

/// The `n` neurons with the largest t (preferring category 0) and the `n` with the smallest
/// (preferring category 1), each ascending; a neuron whose t is not a number is in neither.
pub fn top_sets(stats: &[NeuronStats], n: usize) -> Result<[Vec<usize>; 2]> {
    let mut ranked: Vec<&NeuronStats> = stats.iter().filter(|s| s.t.is_finite()).collect();
    if ranked.len() < 2 * n {
        bail!(
            "only {} neurons have a finite t, fewer than the two sets of --causal-neurons {n} need; use fewer neurons or --no-causal",
            ranked.len()
        );
    }
    ranked.sort_by(|a, b| b.t.total_cmp(&a.t).then(a.neuron.cmp(&b.neuron)));
    let mut first: Vec<usize> = ranked[..n].iter().map(|s| s.neuron).collect();
    let mut second: Vec<usize> = ranked[ranked.len() - n..].iter().map(|s| s.neuron).collect();
    first.sort_unstable();
    second.sort_unstable();
    Ok([first, second])
}

/// `r` sets of `n` distinct neurons of `width`, each ascending, drawn with ChaCha8 seeded by
/// `seed` on stream 1 (the label shuffles use stream 0).
pub fn random_sets(width: usize, n: usize, r: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    (0..r)
        .map(|_| {
            let mut set = rand::seq::index::sample(&mut rng, width, n).into_vec();
            set.sort_unstable();
            set
        })
        .collect()
}

/// The challenge's words as the causal test sees them.
pub struct TestWords<'a> {
    /// Every word, categories in order, and its token ids.
    pub words: &'a [String],
    pub ids: &'a [Vec<u32>],
    /// Each category's name and how many words it has.
    pub categories: &'a [String],
    pub sizes: &'a [usize],
}

/// Runs the causal test: the two top sets of `stats` and the random sets ablated on the words,
/// resuming from `clean`.
#[allow(clippy::too_many_arguments)]
pub fn causal_test(
    engine: &Engine,
    test_words: &TestWords,
    stats: &[NeuronStats],
    clean: &CleanWords,
    args: &CausalArgs,
    seed: u64,
    batch_tokens: Option<usize>,
    notes: &dyn Notes,
) -> Result<CausalTest> {
    let TestWords { words: word_names, ids: words, categories: names, sizes } = *test_words;
    let width = stats.len();
    let hook = Hook::block(clean.layer, HookPoint::MlpPost);
    let tops = top_sets(stats, args.n_neurons)?;
    let n_random = args.random_sets_for(engine);
    let random = random_sets(width, args.n_neurons, n_random, seed);
    let action = match args.ablation {
        Ablation::Zero => Action::Zero,
        Ablation::Mean => Action::Mean(clean.means()),
    };
    let sets: Vec<Vec<usize>> = tops.iter().chain(&random).cloned().collect();
    notes.step(&format!(
        "causal test: {} sets of {} neurons {}-ablated at {hook} ({n_random} random), {} words each",
        sets.len(),
        args.n_neurons,
        args.ablation,
        words.len()
    ));
    let per_word = ablated_effects(engine, hook, words, clean, &sets, &action, batch_tokens, notes)?;

    // Per set: the mean effect on each category's words.
    let category_means = |effects: &[f64]| -> Vec<f64> {
        let mut at = 0;
        sizes
            .iter()
            .map(|&n| {
                let mean = effects[at..at + n].iter().sum::<f64>() / n as f64;
                at += n;
                mean
            })
            .collect()
    };
    let random_means: Vec<Vec<f64>> = per_word[2..].iter().map(|e| category_means(e)).collect();
    let random_all: Vec<f64> = per_word[2..].iter().map(|e| e.iter().sum::<f64>() / e.len() as f64).collect();
    let ablated = |c: usize| {
        let (own, other) = (c, 1 - c);
        let effects = category_means(&per_word[c]);
        let difference = effects[own] - effects[other];
        let at_least = random_means.iter().filter(|r| r[own] - r[other] >= difference).count();
        AblatedSet {
            preferring: c,
            neurons: tops[c].clone(),
            effects,
            difference,
            p_value: (n_random > 0).then(|| (1 + at_least) as f64 / (n_random + 1) as f64),
            word_effects: per_word[c].clone(),
        }
    };
    Ok(CausalTest {
        hook,
        ablation: args.ablation,
        n_neurons: args.n_neurons,
        seed,
        categories: names.to_vec(),
        words: word_names.to_vec(),
        sets: [ablated(0), ablated(1)],
        random: random_means,
        random_all,
    })
}

/// Every word's KL(p_clean ‖ p_ablated) under each of `sets` ablated at `hook` by `action`:
/// `[sets][words]`. The runs are set after set, word after word, streamed in batches that resume
/// at the hook's block from the clean residual stream; each set's intervention is limited to its
/// own copy of the words.
#[allow(clippy::too_many_arguments)]
fn ablated_effects(
    engine: &Engine,
    hook: Hook,
    words: &[Vec<u32>],
    clean: &CleanWords,
    sets: &[Vec<usize>],
    action: &Action,
    batch_tokens: Option<usize>,
    notes: &dyn Notes,
) -> Result<Vec<Vec<f64>>> {
    let w = words.len();
    let interventions = sets
        .iter()
        .enumerate()
        .map(|(k, set)| Intervention {
            hook,
            columns: Some(set.clone()),
            positions: None,
            per_sequence: None,
            sequences: Some(k * w..(k + 1) * w),
            action: action.clone(),
            spec: format!("causal set {k}"),
        })
        .collect();
    let plan = HookPlan::new(&[Hook::Logits])?
        .with_last_token_logits()
        .with_interventions(Interventions::new(interventions));
    let limit = BatchLimits::for_plan(engine, &plan).choose(batch_tokens, &engine.gpu.adapter_name())?;
    let word_tokens: usize = words.iter().map(Vec::len).sum();
    let rows = |i: usize| clean.resid[i % w].as_slice();
    let streamer = Streamer {
        engine,
        plan: &plan,
        hook: Hook::Logits,
        batch_tokens: limit,
        notes,
        label: "causal",
        total_tokens: (sets.len() * word_tokens) as u64,
        resume: Some(ResumeAt { layer: clean.layer, rows: &rows }),
    };
    let mut effects = vec![vec![0.0; w]; sets.len()];
    let runs = (0..sets.len() * w).map(|i| Ok(words[i % w].clone()));
    streamer.run(runs, &|i| format!("word {} of causal set {}", i % w, i / w), |batch, first, logits| {
        let vocab = logits.len() / batch.n_sequences();
        let run: Vec<usize> = (first..first + batch.n_sequences()).collect();
        let kl = kl_rows(&logits, vocab, &run.iter().map(|i| i % w).collect::<Vec<_>>(), clean);
        for (i, value) in run.into_iter().zip(kl) {
            effects[i / w][i % w] = value;
        }
        Ok(())
    })?;
    Ok(effects)
}

/// KL(p_clean ‖ q) = Σ p (log p − log q) of every row of `logits` (`[rows, vocab]`) against the
/// clean run of word `words[row]`, in f64, on every core. Both log-probabilities are computed
/// the same way from f32 logits, so rows equal to the clean ones give exactly 0.
fn kl_rows(logits: &[f32], vocab: usize, words: &[usize], clean: &CleanWords) -> Vec<f64> {
    let kl = |row: usize| {
        let q = &logits[row * vocab..(row + 1) * vocab];
        let w = words[row];
        let (x, p, p_lse) = (&clean.logits[w], &clean.probs[w], clean.log_sum_exp[w]);
        let q_lse = logsumexp(q);
        let mut sum = 0.0;
        for ((&a, &b), &p) in x.iter().zip(q).zip(p) {
            sum += p as f64 * ((a as f64 - p_lse) - (b as f64 - q_lse));
        }
        sum
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(words.len()).max(1);
    let chunk = words.len().div_ceil(threads);
    let mut out = vec![0.0; words.len()];
    std::thread::scope(|scope| {
        for (c, slot) in out.chunks_mut(chunk).enumerate() {
            let kl = &kl;
            scope.spawn(move || {
                for (i, value) in slot.iter_mut().enumerate() {
                    *value = kl(c * chunk + i);
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with_t(ts: &[f64]) -> Vec<NeuronStats> {
        ts.iter()
            .enumerate()
            .map(|(neuron, &t)| NeuronStats {
                neuron,
                means: vec![0.0, 0.0],
                stds: vec![1.0, 1.0],
                t,
                p: 0.5,
                cohen_d: 0.0,
                p_bonferroni: 1.0,
                q_bh: 1.0,
            })
            .collect()
    }

    #[test]
    fn the_top_sets_are_the_extremes_of_t() {
        let stats = stats_with_t(&[0.5, 3.0, -2.0, f64::NAN, 9.0, -7.0, 0.0]);
        assert_eq!(top_sets(&stats, 2).unwrap(), [vec![1, 4], vec![2, 5]]);
        let err = top_sets(&stats, 4).unwrap_err().to_string();
        assert!(err.contains("only 6 neurons have a finite t"), "{err}");
    }

    #[test]
    fn random_sets_are_distinct_sorted_and_seeded() {
        let sets = random_sets(50, 7, 20, 3);
        assert_eq!(sets.len(), 20);
        for set in &sets {
            assert_eq!(set.len(), 7);
            assert!(set.windows(2).all(|w| w[0] < w[1]) && set[6] < 50, "{set:?}");
        }
        assert_eq!(sets, random_sets(50, 7, 20, 3));
        assert_ne!(sets, random_sets(50, 7, 20, 4));
    }

    #[test]
    fn kl_is_zero_for_the_clean_logits_and_matches_the_definition() {
        let mut clean = CleanWords::new(0);
        for row in [vec![1.0f32, 2.0, 3.0], vec![0.0, -1.0, 4.0]] {
            clean.push_logits(row);
        }
        let same: Vec<f32> = clean.logits.concat();
        assert_eq!(kl_rows(&same, 3, &[0, 1], &clean), vec![0.0, 0.0]);
        let other = [3.0f32, 2.0, 1.0];
        let softmax = |r: &[f64]| {
            let z: f64 = r.iter().map(|x| x.exp()).sum();
            r.iter().map(|x| x.exp() / z).collect::<Vec<f64>>()
        };
        let (p, q) = (softmax(&[1.0, 2.0, 3.0]), softmax(&[3.0, 2.0, 1.0]));
        let expected: f64 = p.iter().zip(&q).map(|(a, b)| a * (a / b).ln()).sum();
        let got = kl_rows(&other, 3, &[0], &clean)[0];
        // The clean probabilities are kept as f32.
        assert!((got - expected).abs() < 1e-7 * expected, "{got} vs {expected}");
    }

    #[test]
    fn sizes_are_checked_before_any_work() {
        let args = CausalArgs { n_neurons: 0, ..CausalArgs::default() };
        assert!(args.check(100).unwrap_err().to_string().contains("at least 1"));
        let args = CausalArgs { n_neurons: 51, ..CausalArgs::default() };
        assert!(args.check(100).unwrap_err().to_string().contains("use at most 50"));
        assert!(CausalArgs::default().check(3072).is_ok());
        assert_eq!("mean".parse::<Ablation>().unwrap(), Ablation::Mean);
        assert!("half".parse::<Ablation>().unwrap_err().to_string().contains("use zero or mean"));
    }
}
