//! The presentation of the findings (computed in [`super::findings`]): `report.md`
//! ([`report_markdown`]) and the short terminal summary ([`terminal_summary`]). Rendering only:
//! every number shown here was computed before.
//!
//! Every number a person reads is rounded to 3 significant digits (see [`sig`]), so the text
//! does not change with last-digit differences between GPU adapters. Machine-dependent lines of
//! the terminal summary (adapter and timings) all start with [`MACHINE_LINE_PREFIX`]; in
//! `report.md` the adapter is a row of the run table and the timings are the last section.

use super::causal::CausalTest;
use super::control::SingleTokenControl;
use super::files::{CAUSAL_PNG, HEATMAP_PNG, NEURONS_CSV, OFFSETS_PNG, TOP_NEURONS_PNG};
use super::findings::{
    Findings, Preferring, BAND_ROBUST_Z, BAND_SIGN_SHARE, MAD_TO_SD, TOP_PREFERRING, TOP_WORDS,
};
use super::permutation::PermutationTest;
use super::stats::{NeuronStats, WordActivations};
use crate::text::{md, sig};
use std::fmt::Write as _;
use std::time::Duration;

/// What was run: shown at the top of the report and the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub model: String,
    pub revision: Option<String>,
    pub hook: String,
    pub pooling: String,
    pub prefix_space: bool,
    pub adapter: String,
    pub n_tokens: usize,
}

/// Wall-clock time of each phase of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTimes {
    pub load: Duration,
    /// Opening the GPU and compiling the kernels.
    pub pipelines: Duration,
    pub upload: Duration,
    pub forward: Duration,
    pub readback: Duration,
    /// The causal test's ablated runs.
    pub causal: Duration,
    pub total: Duration,
}

/// The checks a skeptic asks for, shown beside the findings; each is optional.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    /// The counts against label shuffles (`--permutations`).
    pub permutation: Option<PermutationTest>,
    /// The test on single-token words only.
    pub single_token: Option<SingleTokenControl>,
    /// What the top neurons respond to beyond the word lists (`--sweep`), as a Markdown section.
    pub profiles: Option<String>,
    /// Ablating the top neurons (skipped with `--no-causal`).
    pub causal: Option<CausalTest>,
}

/// Every machine-dependent line of [`terminal_summary`] starts with this word.
pub const MACHINE_LINE_PREFIX: &str = "time";
fn percent(share: f64) -> String {
    format!("{}%", sig(100.0 * share, 3))
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn revision_text(info: &RunInfo) -> String {
    info.revision.clone().unwrap_or_else(|| "not pinned".to_string())
}

/// `name n, name n` for every category.
fn category_counts(f: &Findings) -> String {
    f.category_sizes
        .iter()
        .enumerate()
        .map(|(c, n)| format!("{} {n}", f.name(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `n neuron` or `n neurons`.
fn neurons(n: usize) -> String {
    format!("{n} neuron{}", if n == 1 { "" } else { "s" })
}

fn band_rule_short(f: &Findings) -> String {
    format!(
        "|mean − median| > {} × {} × MAD (= {}), same sign for ≥ {}% of words",
        BAND_ROBUST_Z,
        MAD_TO_SD,
        sig(BAND_ROBUST_Z * f.band_scale, 3),
        sig(100.0 * BAND_SIGN_SHARE, 2)
    )
}

fn band_rule_text(f: &Findings) -> String {
    format!(
        "|neuron mean − median of neuron means| > {} × {} × MAD of neuron means (= {}), \
         and the neuron's sign is the same for ≥ {}% of words",
        BAND_ROBUST_Z,
        MAD_TO_SD,
        sig(BAND_ROBUST_Z * f.band_scale, 3),
        sig(100.0 * BAND_SIGN_SHARE, 2)
    )
}

fn words_text(p: &Preferring, markdown: bool) -> String {
    p.top_words
        .iter()
        .map(|w| {
            let word = if markdown { md(&w.word) } else { w.word.clone() };
            format!("{word} ({})", sig(w.value, 3))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The single-token control in a sentence (`markdown`: for report.md).
fn single_token_text(control: &SingleTokenControl, f: &Findings, markdown: bool) -> String {
    let (a, b) = (f.name(0), f.name(1));
    let words = format!("{} {a}, {} {b}", control.words[0], control.words[1]);
    let words = if markdown { md(&words) } else { words };
    match control.counts {
        Some(c) if markdown => format!(
            "The same test on the words that are one token long ({words}): **{}** at BH q < {}, **{}** at Bonferroni p < {} (all words: {} and {}).",
            neurons(c.bh),
            f.alpha,
            c.bonferroni,
            f.alpha,
            f.n_sig_bh,
            f.n_sig_bonferroni
        ),
        Some(c) => format!(
            "single-token words only ({words}): {} at BH q < {}; {} at Bonferroni p < {}",
            neurons(c.bh),
            f.alpha,
            c.bonferroni,
            f.alpha
        ),
        None => format!(
            "single-token words only ({words}): too few for the test (it needs 2 words per category)"
        ),
    }
}

/// `report.md`: run information, the three observations with their numbers and figures, and
/// (as the last section) where the time went.
pub fn report_markdown(
    info: &RunInfo,
    acts: &WordActivations,
    stats: &[NeuronStats],
    findings: &Findings,
    checks: &Checks,
    times: &PhaseTimes,
) -> String {
    let f = findings;
    let (a, b) = (f.name(0), f.name(1));
    let n_words = acts.n_words();
    let mut s = String::new();
    let _ = writeln!(s, "# Grammar tuning in MLP neurons: {} vs {}\n", md(&a), md(&b));
    let _ = writeln!(
        s,
        "Pooled activations of {n_words} words ({}) at `{}`, {} neurons each; \
         per-neuron statistics in [{NEURONS_CSV}]({NEURONS_CSV}).\n",
        md(&category_counts(f)),
        info.hook,
        f.n_neurons
    );

    let _ = writeln!(s, "## Run\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let rows = [
        ("model", format!("`{}`", info.model)),
        ("revision", format!("`{}`", revision_text(info))),
        ("hook", format!("`{}`", info.hook)),
        ("pooling", md(&info.pooling)),
        ("prefix space", yes_no(info.prefix_space).to_string()),
        ("adapter", md(&info.adapter)),
        ("tokens", info.n_tokens.to_string()),
        ("words", md(&category_counts(f))),
        ("neurons", f.n_neurons.to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }

    let _ = writeln!(s, "\n## 1. Systematic offsets\n");
    let _ = writeln!(
        s,
        "- **{}** of the {} neurons have a negative mean activation over all {n_words} words.",
        percent(f.share_negative_neurons),
        f.n_neurons
    );
    let _ = writeln!(
        s,
        "- The median per-neuron mean is **{}**; the mean of the neuron means is {}.",
        sig(f.median_neuron_mean, 3),
        sig(f.mean_neuron_mean, 3)
    );
    let _ = writeln!(
        s,
        "- {} of all individual activations (word × neuron) are negative.\n",
        percent(f.share_negative_activations)
    );
    let _ = writeln!(s, "![Histogram of per-neuron means]({OFFSETS_PNG})");

    let _ = writeln!(s, "\n## 2. Vertical bands\n");
    let _ = writeln!(s, "Rule: a neuron is a band when {}.\n", band_rule_text(f));
    let positive = f.bands.iter().filter(|b| b.mean > 0.0).count();
    let _ = writeln!(
        s,
        "**{}** {} ({positive} positive, {} negative).\n",
        neurons(f.bands.len()),
        if f.bands.len() == 1 { "is a band" } else { "are bands" },
        f.bands.len() - positive
    );
    if !f.bands.is_empty() {
        let _ = writeln!(s, "| neuron | mean over all words | robust z | words with its sign |");
        let _ = writeln!(s, "|---:|---:|---:|---:|");
        for band in f.bands.iter().take(10) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                band.neuron,
                sig(band.mean, 3),
                sig(band.robust_z, 3),
                percent(band.sign_share)
            );
        }
        if f.bands.len() > 10 {
            let _ = writeln!(s, "\n({} more in the heatmap.)", f.bands.len() - 10);
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "![Words × neurons heatmap]({HEATMAP_PNG})");

    let _ = writeln!(s, "\n## 3. {} vs {} preference\n", md(&a), md(&b));
    let _ = writeln!(
        s,
        "Welch's t-test per neuron, {a} minus {b} (positive t: more active for {a}), two-sided, \
         {} tests; Bonferroni p = min(1, {} · p); Benjamini–Hochberg q (step-up). \
         Cohen's d uses the pooled SD (ddof 1).\n",
        stats.len(),
        stats.len()
    );
    let _ = writeln!(
        s,
        "- BH q < {}: **{}** ({} prefer {a}, {} prefer {b}).",
        f.alpha,
        neurons(f.n_sig_bh),
        f.n_sig_bh_first,
        f.n_sig_bh_second
    );
    let _ = writeln!(
        s,
        "- Bonferroni p < {}: **{}** ({} prefer {a}, {} prefer {b}).",
        f.alpha,
        neurons(f.n_sig_bonferroni),
        f.n_sig_bonferroni_first,
        f.n_sig_bonferroni_second
    );
    if let Some(test) = &checks.permutation {
        let _ = writeln!(
            s,
            "\n**Against chance.** The {a}/{b} labels shuffled {} times (seed {}), the whole test run on \
             each shuffle; the permutation p is (1 + shuffles with a count at least the observed one) / \
             ({} + 1).\n",
            test.n, test.seed, test.n
        );
        let _ = writeln!(s, "| count | observed | null mean | null 95th percentile | permutation p |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for (what, c) in [
            (format!("BH q < {}", f.alpha), &test.bh),
            (format!("Bonferroni p < {}", f.alpha), &test.bonferroni),
        ] {
            let _ = writeln!(
                s,
                "| {what} | {} | {} | {} | {} |",
                c.observed,
                sig(c.null_mean, 3),
                sig(c.null_p95, 3),
                sig(c.p_value, 3)
            );
        }
    }
    if let Some(control) = &checks.single_token {
        let _ = writeln!(s, "\n**Word length.** {}", single_token_text(control, f, true));
    }
    for (name, other, list) in [(&a, &b, &f.top_first), (&b, &a, &f.top_second)] {
        let _ = writeln!(s, "\n### Top {} {}-preferring neurons\n", TOP_PREFERRING, md(name));
        if list.is_empty() {
            let _ = writeln!(s, "No neuron has a mean that is higher for {}.", md(name));
            continue;
        }
        let _ = writeln!(
            s,
            "| neuron | t | Cohen's d | mean {} | mean {} | BH q | Bonferroni p | top {} words of {} |",
            md(name),
            md(other),
            TOP_WORDS,
            md(name)
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---|");
        for p in list {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                p.neuron,
                sig(p.t, 3),
                sig(p.cohen_d, 3),
                sig(p.mean_preferred, 3),
                sig(p.mean_other, 3),
                sig(p.q_bh, 3),
                sig(p.p_bonferroni, 3),
                words_text(p, true)
            );
        }
    }
    let _ = writeln!(s, "\n![Top neurons by |t|]({TOP_NEURONS_PNG})");
    causal_markdown(&mut s, checks.causal.as_ref());
    if let Some(profiles) = &checks.profiles {
        s.push_str(profiles);
    }

    let _ = writeln!(s, "\n## Where time went\n");
    let _ = writeln!(s, "| phase | time |\n|---|---:|");
    for (phase, d) in [
        ("load", times.load),
        ("pipelines", times.pipelines),
        ("upload", times.upload),
        ("forward", times.forward),
        ("readback", times.readback),
        ("causal test", times.causal),
        ("total", times.total),
    ] {
        let _ = writeln!(s, "| {phase} | {} |", seconds(d));
    }
    s
}

/// The short summary the CLI prints (about 20 lines). Every machine-dependent line (adapter,
/// timings) starts with [`MACHINE_LINE_PREFIX`], so a snapshot test can drop them.
pub fn terminal_summary(info: &RunInfo, findings: &Findings, checks: &Checks, times: &PhaseTimes) -> String {
    let f = findings;
    let (a, b) = (f.name(0), f.name(1));
    let mut s = String::new();
    let _ = writeln!(s, "grammar tuning: {a} vs {b} in {} neurons", f.n_neurons);
    let _ = writeln!(s, "model     {} (revision {})", info.model, revision_text(info));
    let _ = writeln!(
        s,
        "hook      {}, pooling {}, prefix space {}, {} tokens",
        info.hook,
        info.pooling,
        yes_no(info.prefix_space),
        info.n_tokens
    );
    let _ = writeln!(s, "words     {}", category_counts(f));
    let _ = writeln!(
        s,
        "(1) offsets: {} of neurons have a negative mean over all words; median neuron mean {}",
        percent(f.share_negative_neurons),
        sig(f.median_neuron_mean, 3)
    );
    let strongest = f
        .bands
        .iter()
        .take(5)
        .map(|b| format!("n{} ({})", b.neuron, sig(b.mean, 3)))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "(2) bands: {}{}",
        neurons(f.bands.len()),
        if strongest.is_empty() { String::new() } else { format!(": {strongest}") }
    );
    let _ = writeln!(s, "    rule: {}", band_rule_short(f));
    let _ = writeln!(
        s,
        "(3) {a} − {b}: {} at BH q < {} ({} prefer {a}, {} prefer {b}); {} at Bonferroni p < {}",
        neurons(f.n_sig_bh),
        f.alpha,
        f.n_sig_bh_first,
        f.n_sig_bh_second,
        f.n_sig_bonferroni,
        f.alpha
    );
    if let Some(test) = &checks.permutation {
        let _ = writeln!(
            s,
            "    against chance ({} label shuffles): BH null mean {}, 95th pct {}, p = {}; Bonferroni null mean {}, 95th pct {}, p = {}",
            test.n,
            sig(test.bh.null_mean, 3),
            sig(test.bh.null_p95, 3),
            sig(test.bh.p_value, 3),
            sig(test.bonferroni.null_mean, 3),
            sig(test.bonferroni.null_p95, 3),
            sig(test.bonferroni.p_value, 3)
        );
    }
    if let Some(control) = &checks.single_token {
        let _ = writeln!(s, "    {}", single_token_text(control, f, false));
    }
    for (name, list) in [(&a, &f.top_first), (&b, &f.top_second)] {
        let _ = writeln!(s, "    prefer {name}:");
        if list.is_empty() {
            let _ = writeln!(s, "      none");
        }
        for p in list {
            let _ = writeln!(
                s,
                "      n{:<5} t {:>7}  d {:>6}  q {:>8}  {}",
                p.neuron,
                sig(p.t, 3),
                sig(p.cohen_d, 3),
                sig(p.q_bh, 3),
                words_text(p, false)
            );
        }
    }
    if let Some(test) = &checks.causal {
        let null = match test.random_summary() {
            Some((mean, p95)) => {
                format!(
                    "; {} random sets: mean {}, 95th pct {}",
                    test.random.len(),
                    sig(mean, 3),
                    sig(p95, 3)
                )
            }
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "(4) causal: {} neurons {}-ablated at {}, mean KL of the next token{null}",
            test.n_neurons, test.ablation, test.hook
        );
        for set in &test.sets {
            let effects: Vec<String> = test
                .categories
                .iter()
                .zip(&set.effects)
                .map(|(n, e)| format!("{n} {}", sig(*e, 3)))
                .collect();
            let p = set.p_value.map(|p| format!(", p = {}", sig(p, 3))).unwrap_or_default();
            let _ = writeln!(
                s,
                "    {} set: {}; difference {}{p}",
                test.categories[set.preferring],
                effects.join(", "),
                sig(set.difference, 3)
            );
        }
    }
    let _ = writeln!(s, "{MACHINE_LINE_PREFIX}      adapter {}", info.adapter);
    let _ = writeln!(
        s,
        "{MACHINE_LINE_PREFIX}      load {}, pipelines {}, upload {}, forward {}, readback {}, causal {}, total {}",
        seconds(times.load),
        seconds(times.pipelines),
        seconds(times.upload),
        seconds(times.forward),
        seconds(times.readback),
        seconds(times.causal),
        seconds(times.total)
    );
    s
}

/// Section 4 of `report.md`: the causal test, or why it is missing.
fn causal_markdown(s: &mut String, test: Option<&CausalTest>) {
    let _ = writeln!(s, "\n## 4. Does ablating them matter?\n");
    let Some(t) = test else {
        let _ = writeln!(s, "Not run (`--no-causal`).");
        return;
    };
    let (a, b) = (&t.categories[0], &t.categories[1]);
    let _ = writeln!(
        s,
        "The {n} neurons with the largest t (preferring {a}) and, separately, the {n} with the smallest \
         (preferring {b}) are {ablation}-ablated at `{hook}` (after GELU{mean}), and every word runs through \
         the rest of the model. A word's effect is KL(p_clean ‖ p_ablated) of the next-token distribution \
         after its last token, in nats. The null: {r} sets of {n} neurons of the same block drawn at random \
         (seed {seed}), ablated the same way. A set's difference is its mean effect on its own category's \
         words minus that on the other's; p = (1 + random sets with a difference in the same direction at \
         least as large) / ({r} + 1).\n",
        a = md(a),
        b = md(b),
        n = t.n_neurons,
        ablation = t.ablation,
        hook = t.hook,
        mean = if t.ablation == super::causal::Ablation::Mean {
            ": set to their mean over every token of the words"
        } else {
            ""
        },
        r = t.random.len(),
        seed = t.seed,
    );
    let smallest = 1.0 / (t.random.len() + 1) as f64;
    if smallest > 0.05 {
        let _ = writeln!(
            s,
            "With {} random sets no p-value can be below {}: pass `--causal-sets 99` (or more) for a \
             null that can reject at 0.01.\n",
            t.random.len(),
            sig(smallest, 3)
        );
    }
    let names: Vec<String> = t.categories.iter().map(|n| format!("effect on {}", md(n))).collect();
    let _ = writeln!(s, "| ablated | neurons | {} | difference | p |", names.join(" | "));
    let _ = writeln!(s, "|---|---|{}---:|---:|", "---:|".repeat(names.len()));
    for set in &t.sets {
        let effects: Vec<String> = set.effects.iter().map(|e| sig(*e, 3)).collect();
        let neurons: Vec<String> = set.neurons.iter().map(usize::to_string).collect();
        let _ = writeln!(
            s,
            "| {}-preferring | {} | {} | {} | {} |",
            md(&t.categories[set.preferring]),
            neurons.join(", "),
            effects.join(" | "),
            sig(set.difference, 3),
            set.p_value.map_or("–".to_string(), |p| sig(p, 3))
        );
    }
    if let Some((mean, p95)) = t.random_summary() {
        let means: Vec<String> =
            (0..t.categories.len()).map(|c| t.random_mean(c).map_or("–".into(), |m| sig(m, 3))).collect();
        let _ = writeln!(s, "| {} random sets (mean) | – | {} | – | – |", t.random.len(), means.join(" | "));
        let _ = writeln!(
            s,
            "\nOver all words, a random set's mean effect is {} on average; its 95th percentile is {}.",
            sig(mean, 3),
            sig(p95, 3)
        );
    }
    for set in &t.sets {
        let mut order: Vec<usize> = (0..set.word_effects.len()).collect();
        order.sort_by(|&i, &j| set.word_effects[j].total_cmp(&set.word_effects[i]));
        let words: Vec<String> = order
            .iter()
            .take(5)
            .map(|&i| format!("{} ({})", md(&t.words[i]), sig(set.word_effects[i], 3)))
            .collect();
        let _ = writeln!(
            s,
            "\nWords the {}-preferring set changed most: {}.",
            md(&t.categories[set.preferring]),
            words.join(", ")
        );
    }
    let _ = writeln!(s, "\n![Effect of each ablated set on each category]({CAUSAL_PNG})");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::findings::findings;
    use crate::challenge::stats::neuron_stats;
    use crate::challenge::synthetic;

    fn info() -> RunInfo {
        RunInfo {
            model: "EleutherAI/gpt-neo-125m".into(),
            revision: Some("21def0189f5705e2521767faed922f1f15e7d7db".into()),
            hook: "blocks.8.mlp.hook_pre".into(),
            pooling: "mean".into(),
            prefix_space: true,
            adapter: "Test Adapter (Vulkan)".into(),
            n_tokens: 27,
        }
    }

    fn times() -> PhaseTimes {
        let ms = Duration::from_millis;
        PhaseTimes {
            load: ms(1500),
            pipelines: ms(300),
            upload: ms(120),
            forward: ms(35),
            readback: ms(4),
            causal: ms(50),
            total: ms(2000),
        }
    }

    /// Every check, on the synthetic activations: 100 shuffles, and half the verbs made
    /// two-token words for the control.
    fn checks(acts: &WordActivations, f: &Findings) -> Checks {
        use crate::challenge::control::single_token_control;
        use crate::challenge::permutation::{permutation_test, Counts};
        let observed = Counts { bh: f.n_sig_bh, bonferroni: f.n_sig_bonferroni };
        let mut tokens = vec![1; 20];
        tokens[..5].fill(2);
        Checks {
            permutation: Some(permutation_test(acts, observed, 100, 1)),
            single_token: Some(single_token_control(acts, &tokens).unwrap()),
            profiles: Some("\n## 5. PROFILES\n".to_string()),
            causal: Some(causal_test(acts)),
        }
    }

    /// A causal test with made-up effects on the synthetic words: 2 neurons per set, 4 random sets.
    fn causal_test(acts: &WordActivations) -> CausalTest {
        use crate::challenge::causal::{AblatedSet, Ablation};
        let words: Vec<String> = acts.categories.iter().flat_map(|c| c.words.clone()).collect();
        let n_words = words.len();
        let set = |preferring: usize, effects: Vec<f64>, p| AblatedSet {
            preferring,
            neurons: vec![3 + preferring, 7 + preferring],
            difference: effects[preferring] - effects[1 - preferring],
            effects,
            p_value: Some(p),
            word_effects: (0..n_words).map(|i| ((i * 7 + preferring) % 20) as f64 / 100.0).collect(),
        };
        CausalTest {
            hook: crate::model::Hook::block(8, crate::model::HookPoint::MlpPost),
            ablation: Ablation::Zero,
            n_neurons: 2,
            seed: 1,
            categories: vec!["verbs".into(), "nouns".into()],
            words,
            sets: [set(0, vec![0.5, 0.25], 0.2), set(1, vec![0.125, 0.375], 0.4)],
            random: vec![vec![0.0, 0.0], vec![0.25, 0.5], vec![0.5, 0.25], vec![0.25, 0.25]],
            random_all: vec![0.0, 0.375, 0.375, 0.25],
        }
    }

    fn synthetic_findings() -> (WordActivations, Vec<NeuronStats>, Findings) {
        let acts = synthetic::activations();
        let stats = neuron_stats(&acts).unwrap();
        let f = findings(&acts, &stats);
        (acts, stats, f)
    }

    #[test]
    fn terminal_summary_is_short_and_keeps_machine_lines_apart() {
        let (acts, _, f) = synthetic_findings();
        let text = terminal_summary(&info(), &f, &checks(&acts, &f), &times());
        let lines: Vec<&str> = text.lines().collect();
        assert!((15..=30).contains(&lines.len()), "{} lines:\n{text}", lines.len());
        let machine: Vec<&&str> = lines.iter().filter(|l| l.starts_with(MACHINE_LINE_PREFIX)).collect();
        assert_eq!(machine.len(), 2);
        assert!(machine.iter().any(|l| l.contains("Test Adapter")));
        assert!(machine.iter().any(|l| l.contains("forward 0.035 s")));
        for line in lines.iter().filter(|l| !l.starts_with(MACHINE_LINE_PREFIX)) {
            assert!(!line.contains("Adapter") && !line.contains(" s,"), "machine data in {line:?}");
        }
        assert!(text.contains("(2) bands: 1 neuron: n20 ("), "{text}");
        assert!(
            text.contains("(3) verbs − nouns: 3 neurons at BH q < 0.05 (2 prefer verbs, 1 prefer nouns)"),
            "{text}"
        );
        assert!(text.contains("    against chance (100 label shuffles): BH null mean "), "{text}");
        assert!(text.contains("    single-token words only (5 verbs, 10 nouns): "), "{text}");
        assert!(
            text.contains("(4) causal: 2 neurons zero-ablated at blocks.8.mlp.hook_post, mean KL of the next token; 4 random sets: mean 0.250, 95th pct 0.375"),
            "{text}"
        );
        assert!(
            text.contains("    verbs set: verbs 0.500, nouns 0.250; difference 0.250, p = 0.200"),
            "{text}"
        );
        // Without the checks, their lines are gone.
        let plain = terminal_summary(&info(), &f, &Checks::default(), &times());
        assert_eq!(plain.lines().count() + 5, lines.len());
    }

    #[test]
    fn terminal_summary_snapshot() {
        let (acts, _, f) = synthetic_findings();
        insta::assert_snapshot!(terminal_summary(&info(), &f, &checks(&acts, &f), &times()));
    }

    #[test]
    fn report_has_every_section_and_number() {
        let (acts, stats, f) = synthetic_findings();
        let mut run = info();
        run.revision = None;
        let md = report_markdown(&run, &acts, &stats, &f, &checks(&acts, &f), &times());
        for needle in [
            "## Run",
            "| revision | `not pinned` |",
            "| prefix space | yes |",
            "| tokens | 27 |",
            "## 1. Systematic offsets",
            "**92.0%** of the 50 neurons",
            "## 2. Vertical bands",
            "**1 neuron** is a band (1 positive, 0 negative)",
            "## 3. verbs vs nouns preference",
            "- Bonferroni p < 0.05: **3 neurons** (2 prefer verbs, 1 prefer nouns).",
            "### Top 5 verbs-preferring neurons",
            "### Top 5 nouns-preferring neurons",
            "verb2 (",
            "](heatmap.png)",
            "](top_neurons.png)",
            "](offsets.png)",
            "[neurons.csv](neurons.csv)",
            "| forward | 0.035 s |",
            "**Against chance.** The verbs/nouns labels shuffled 100 times (seed 1)",
            "| BH q < 0.05 | 3 | ",
            "| Bonferroni p < 0.05 | 3 | ",
            "**Word length.** The same test on the words that are one token long (5 verbs, 10 nouns): ",
            "(all words: 3 and 3)",
            "\n## 5. PROFILES\n",
            "## 4. Does ablating them matter?",
            "| verbs-preferring | 3, 7 | 0.500 | 0.250 | 0.250 | 0.200 |",
            "| nouns-preferring | 4, 8 | 0.125 | 0.375 | 0.250 | 0.400 |",
            "| 4 random sets (mean) | – | 0.250 | 0.250 | – | – |",
            "its 95th percentile is 0.375",
            "With 4 random sets no p-value can be below 0.200: pass `--causal-sets 99`",
            "](causal.png)",
            "| causal test | 0.050 s |",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
        }
        // The timing section is last, so cutting at its heading leaves only stable text.
        let cut = md.find("## Where time went").unwrap();
        assert!(!md[..cut].contains(" s |"));
        let table_row =
            md.lines().find(|l| l.starts_with(&format!("| {} |", synthetic::NOUN_NEURON))).unwrap();
        assert!(table_row.contains("noun"), "{table_row}");
    }

    #[test]
    fn terminal_summary_survives_degenerate_findings() {
        let acts = synthetic::activations();
        let broken = WordActivations { rows: vec![], ..acts };
        let f = findings(&broken, &[]);
        let text = terminal_summary(&info(), &f, &Checks::default(), &PhaseTimes::default());
        assert!(text.contains("none"));
    }
}
