//! `neoprobe challenge` end to end: word lists → one packed forward up to
//! `blocks.{L}.mlp.hook_pre` → pooled activations → statistics, figures and report, all written
//! into the output folder at once.
//!
//! Order of work, cheapest checks first so that bad input fails in milliseconds:
//! 1. the output folder (refused if it holds files, unless `force`; its parent must accept a
//!    new folder), the categories and their word lists (duplicates, sizes, overlaps);
//! 2. the model: a local folder, or a hub id fetched into the HF cache; `--layer` is checked
//!    against its config before any weight is read;
//! 3. tokenizing every word (one that gives no token is an error), one packed batch, one forward
//!    (through the whole model when the causal test runs: it needs the clean next-token
//!    distributions);
//! 4. statistics, the causal test (`causal`), figures and report, written into a fresh staging
//!    folder beside the output folder, whose files are moved into place only once every one of
//!    them is complete.

use super::causal::CausalArgs;
use super::causal::{causal_test, CleanWords, TestWords};
use super::control::single_token_control;
use super::files::{
    ACTIVATIONS_NPY, ACTIVATIONS_SAFETENSORS, CAUSAL_PNG, HEATMAP_PNG, NEURONS_CSV, OFFSETS_PNG,
    OUTPUT_FILES, REPORT_MD, TOP_NEURONS_PNG,
};
use super::findings::findings;
use super::permutation::{permutation_test, Counts};
use super::plots::{causal_png, heatmap_png_titled, offsets_png, top_neurons_png};
use super::profiles::{load_sweeps, profiles_markdown};
use super::report::{report_markdown, terminal_summary, Checks, PhaseTimes, RunInfo};
use super::stats::{
    csv_name, neuron_stats, neuron_table, write_neurons_csv, Category, NeuronColumn, WordActivations,
};
use super::summary::{ChallengeSummary, PhaseSeconds, RunDetails};
use crate::batching::{BatchLimits, Streamer};
use crate::engine::{Engine, LoadedModel, ModelSource, ResolvedModel};
use crate::hub::FetchOptions;
use crate::kernels::Variant;
use crate::model::{Hook, HookPlan, HookPoint, ModelDir};
use crate::notes::Notes;
use crate::out_dir::{check_out_dir, Staging};
use crate::output;
use crate::pool::{pool, Pool};
use crate::tokenize::{ListedWord, WordSource};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// The output folder unless told otherwise.
pub const DEFAULT_OUT_DIR: &str = "challenge-out";
/// Neurons drawn in `top_neurons.png`.
pub const TOP_NEURONS_DRAWN: usize = 10;

/// One category of words: its name and where its words come from.
#[derive(Clone, Debug, PartialEq)]
pub struct CategorySpec {
    pub name: String,
    pub source: WordSource,
}

impl CategorySpec {
    /// Parses a `--category NAME=FILE` argument.
    pub fn parse(arg: &str) -> Result<CategorySpec> {
        let Some((name, file)) = arg.split_once('=') else {
            bail!("--category {arg:?} has no '='; write it as NAME=FILE, e.g. --category verbs=my_verbs.txt");
        };
        let name = name.trim();
        if name.is_empty() {
            bail!(
                "--category {arg:?} has an empty name; write it as NAME=FILE, e.g. --category verbs={file}"
            );
        }
        if file.is_empty() {
            bail!(
                "--category {arg:?} names no file; write it as NAME=FILE, e.g. --category {name}=words.txt"
            );
        }
        Ok(CategorySpec { name: name.to_string(), source: WordSource::File(PathBuf::from(file)) })
    }

    /// The default two categories: verbs (category 0) then nouns, each from its file when given,
    /// else from the built-in list.
    pub fn verbs_and_nouns(verbs: Option<PathBuf>, nouns: Option<PathBuf>) -> Vec<CategorySpec> {
        vec![
            CategorySpec {
                name: "verbs".into(),
                source: verbs.map_or_else(WordSource::verbs, WordSource::File),
            },
            CategorySpec {
                name: "nouns".into(),
                source: nouns.map_or_else(WordSource::nouns, WordSource::File),
            },
        ]
    }
}

/// Everything `neoprobe challenge` is asked to do.
#[derive(Clone, Debug)]
pub struct ChallengeArgs {
    pub model: ModelSource,
    /// At least two; the t-test compares the first two, every category gets means and SDs.
    pub categories: Vec<CategorySpec>,
    /// The block whose `mlp.hook_pre` (c_fc output, before GELU) is read.
    pub layer: usize,
    /// How each word's tokens become one row (`Pool::None` is refused).
    pub pool: Pool,
    /// Put one space before each word before tokenizing.
    pub prefix_space: bool,
    pub out_dir: PathBuf,
    /// Write into an output folder that already holds files (replacing the challenge's files).
    pub force: bool,
    /// Kernel variant; `None`: the engine's best for the adapter.
    pub variant: Option<Variant>,
    /// How to reach the hub and its cache (only for [`ModelSource::Hub`]).
    pub fetch: FetchOptions,
    /// Tokens per GPU batch (`None`: the adapter's default, see `batching`).
    pub batch_tokens: Option<usize>,
    /// Label shuffles of the permutation test (0: none) and the generator's seed.
    pub permutations: usize,
    pub seed: u64,
    /// Output folders of the sweeps, for the report's section on the top neurons.
    pub sweeps: Vec<PathBuf>,
    /// The causal test (ablating the top neurons); `None`: skipped (`--no-causal`).
    pub causal: Option<CausalArgs>,
}

/// What a challenge run produced: the results as values (the same numbers the files hold) and
/// where the files and the model are.
#[derive(Clone, Debug)]
pub struct ChallengeOutcome {
    /// The summary; `challenge --json` prints it.
    pub summary: ChallengeSummary,
    /// The summary as text for a terminal ([`terminal_summary`]); `challenge` prints it.
    pub terminal_summary: String,
    /// The shape of the activations array.
    pub shape: Vec<usize>,
    /// The array written to activations.npy and activations.safetensors, row-major in `shape`:
    /// one row of pooled activations per word, categories in order.
    pub activations: Vec<f32>,
    /// The table written to neurons.csv, column by column in the file's order.
    pub neurons: Vec<NeuronColumn>,
    /// Every file written, at its final place.
    pub files: Vec<PathBuf>,
    pub times: PhaseTimes,
    /// The model's files: their folder, and for a hub model the revision, the commit it
    /// resolved to and the time it took to find or fetch them.
    pub model: ResolvedModel,
}

/// A category's words, read and checked.
struct ListedCategory {
    name: String,
    source: String,
    words: Vec<ListedWord>,
}

/// Runs the challenge. `notes` receives the steps and progress as the run goes; the results
/// come back in the [`ChallengeOutcome`]. Nothing is written unless the whole run succeeds.
pub fn run_challenge(args: &ChallengeArgs, notes: &dyn Notes) -> Result<ChallengeOutcome> {
    let started = Instant::now();
    if args.pool == Pool::None {
        bail!("--pool none is not available for the challenge, which needs one row per word; use mean, first, last or max");
    }
    check_out_dir(&args.out_dir, args.force, &OUTPUT_FILES, "the challenge's files")?;
    let categories = read_categories(&args.categories)?;

    // The model.
    let resolved = args.model.resolve(&args.fetch, notes)?;
    let ResolvedModel { dir, label: model_label, revision, commit, fetch_time } = resolved.clone();
    let hook = Hook::block(args.layer, HookPoint::MlpPre);
    let (model, plan) = LoadedModel::load(&ModelDir::open(&dir)?, |config| {
        if args.layer >= config.num_layers {
            bail!(
                "--layer {} is out of range: the model has {} blocks; choose a layer from 0 to {}",
                args.layer,
                config.num_layers,
                config.num_layers - 1
            );
        }
        match &args.causal {
            None => HookPlan::new(&[hook]),
            Some(causal) => {
                causal.check(hook.width(config))?;
                let mut hooks = CleanWords::hooks(args.layer).to_vec();
                hooks.push(hook);
                Ok(HookPlan::new(&hooks)?.with_last_token_logits())
            }
        }
    })?;
    let config = &model.config;
    let width = hook.width(config);
    // The sweeps the report draws on, checked before any GPU work.
    let evidence = if args.sweeps.is_empty() {
        None
    } else {
        let sha256 = ModelDir::open(&dir)?.weights_sha256()?;
        Some(load_sweeps(&args.sweeps, args.layer, width, &sha256)?)
    };

    // Tokens: every word alone, in packed batches.
    let mut sequences = Vec::new();
    for category in &categories {
        for w in &category.words {
            let ids = model
                .tokenizer
                .encode_word(&w.word, args.prefix_space)
                .with_context(|| format!("word list {} line {}", category.source, w.line))?;
            sequences.push(ids);
        }
    }
    let n_tokens: usize = sequences.iter().map(Vec::len).sum();
    notes.step(&format!(
        "{} words, {n_tokens} tokens, through blocks 0 to {} of {model_label}",
        sequences.len(),
        args.layer
    ));

    // The forward.
    let engine = Engine::new(&model.weights, args.variant, model.load_time)?;
    let adapter = engine.gpu.adapter_name();
    let variant = engine.kernels.variant;
    let batch_tokens = BatchLimits::for_plan(&engine, &plan).choose(args.batch_tokens, &adapter)?;
    notes.step(&format!("running on {adapter} with the {variant} kernels"));
    let names: Vec<String> = categories
        .iter()
        .flat_map(|c| c.words.iter().map(|w| format!("word {:?} ({} line {})", w.word, c.source, w.line)))
        .collect();
    let mut pooled = Vec::with_capacity(sequences.len() * width);
    let mut clean = args.causal.as_ref().map(|_| CleanWords::new(args.layer));
    let streamer = Streamer {
        engine: &engine,
        plan: &plan,
        hook,
        batch_tokens,
        notes,
        label: "challenge",
        total_tokens: n_tokens as u64,
        resume: None,
    };
    let streamed = streamer.run_all(
        sequences.iter().cloned().map(Ok),
        &|i| names[i].clone(),
        |batch, _, mut acts| {
            let rows = acts.take(hook).context("the forward did not read back the hook")?;
            pooled.extend(pool(&rows, width, batch, args.pool));
            if let Some(clean) = clean.as_mut() {
                clean.add_batch(batch, &mut acts)?;
            }
            Ok(())
        },
    )?;

    // Statistics.
    let acts = WordActivations::new(
        categories
            .iter()
            .map(|c| Category {
                name: c.name.clone(),
                words: c.words.iter().map(|w| w.word.clone()).collect(),
            })
            .collect(),
        width,
        pooled,
    )?;
    let stats = neuron_stats(&acts)?;
    let found = findings(&acts, &stats);
    let observed = Counts { bh: found.n_sig_bh, bonferroni: found.n_sig_bonferroni };
    if args.permutations > 0 {
        notes.step(&format!("{} label shuffles (seed {})", args.permutations, args.seed));
    }
    let token_counts: Vec<usize> = sequences.iter().map(Vec::len).collect();
    let causal_started = Instant::now();
    let causal = match (&args.causal, &clean) {
        (Some(causal), Some(clean)) => {
            let names: Vec<String> = categories.iter().map(|c| c.name.clone()).collect();
            let sizes: Vec<usize> = categories.iter().map(|c| c.words.len()).collect();
            let words: Vec<String> =
                categories.iter().flat_map(|c| c.words.iter().map(|w| w.word.clone())).collect();
            let test_words = TestWords { words: &words, ids: &sequences, categories: &names, sizes: &sizes };
            Some(causal_test(
                &engine,
                &test_words,
                &stats,
                clean,
                causal,
                args.seed,
                args.batch_tokens,
                notes,
            )?)
        }
        _ => None,
    };
    let causal_time = causal_started.elapsed();
    let checks = Checks {
        permutation: (args.permutations > 0)
            .then(|| permutation_test(&acts, observed, args.permutations, args.seed)),
        single_token: Some(single_token_control(&acts, &token_counts)?),
        profiles: evidence.as_ref().map(|e| profiles_markdown(e, &found, &model.tokenizer)),
        causal,
    };
    let info = RunInfo {
        model: model_label.clone(),
        revision: commit.clone(),
        hook: hook.to_string(),
        pooling: args.pool.to_string(),
        prefix_space: args.prefix_space,
        adapter: format!("{adapter}, {variant} kernels"),
        n_tokens,
    };

    // Files, into a staging folder beside the output folder.
    let sizes: Vec<usize> = categories.iter().map(|c| c.words.len()).collect();
    let shape = activations_shape(&sizes, width);
    let mut metadata = HashMap::new();
    let offsets: Vec<usize> =
        sizes.iter().scan(0, |next, n| Some(std::mem::replace(next, *next + n))).collect();
    let listed: Vec<serde_json::Value> = categories
        .iter()
        .zip(&offsets)
        .map(|(c, offset)| {
            serde_json::json!({
                "name": c.name,
                "source": c.source,
                "offset": offset,
                "size": c.words.len(),
                "words": c.words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    metadata.insert("layout".to_string(), layout_text(&shape).to_string());
    metadata.insert("categories".to_string(), serde_json::to_string(&listed)?);
    metadata.insert("category_sizes".to_string(), serde_json::to_string(&sizes)?);
    metadata.insert("category_offsets".to_string(), serde_json::to_string(&offsets)?);
    metadata.insert("token_ids".to_string(), serde_json::to_string(&sequences)?);
    match &args.model {
        ModelSource::Dir(path) => {
            metadata.insert("model_dir".to_string(), path.display().to_string());
        }
        ModelSource::Hub { id, .. } => {
            metadata.insert("model".to_string(), id.clone());
            metadata.insert("revision".to_string(), revision.clone().unwrap_or_default());
            metadata.insert("commit".to_string(), commit.clone().unwrap_or_default());
        }
    }
    metadata.insert("hook".to_string(), hook.to_string());
    metadata.insert("pooling".to_string(), args.pool.to_string());
    metadata.insert("prefix_space".to_string(), args.prefix_space.to_string());
    metadata.insert("adapter".to_string(), adapter.clone());
    metadata.insert("kernel_variant".to_string(), variant.to_string());
    metadata.insert("neoprobe_version".to_string(), env!("CARGO_PKG_VERSION").to_string());

    let staging = Staging::create(&args.out_dir)?;
    let at = |name: &str| staging.file(name);
    output::write_array(&at(ACTIVATIONS_NPY), &shape, &acts.rows, &metadata)?;
    output::write_array(&at(ACTIVATIONS_SAFETENSORS), &shape, &acts.rows, &metadata)?;
    let neurons = neuron_table(&acts, &stats)?;
    write_neurons_csv(&at(NEURONS_CSV), &neurons)?;
    let pinned = commit.as_deref().map(|c| format!(" @ {}", &c[..c.len().min(7)])).unwrap_or_default();
    let title = format!("{model_label}{pinned} · {hook} · {} over each word's tokens", args.pool);
    heatmap_png_titled(&at(HEATMAP_PNG), &acts, &title)?;
    top_neurons_png(&at(TOP_NEURONS_PNG), &acts, &stats, TOP_NEURONS_DRAWN)?;
    offsets_png(&at(OFFSETS_PNG), &acts)?;
    if let Some(test) = &checks.causal {
        causal_png(&at(CAUSAL_PNG), test)?;
    }
    let times = PhaseTimes {
        load: engine.times.load,
        pipelines: engine.times.pipelines,
        upload: engine.times.upload,
        forward: streamed.forward,
        readback: streamed.readback,
        causal: causal_time,
        total: started.elapsed(),
    };
    let report = report_markdown(&info, &acts, &stats, &found, &checks, &times);
    output::write_atomic(&at(REPORT_MD), |w| Ok(w.write_all(report.as_bytes())?))?;
    let written: Vec<&str> =
        OUTPUT_FILES.iter().copied().filter(|&f| f != CAUSAL_PNG || checks.causal.is_some()).collect();
    let files = staging.publish(&args.out_dir, &written)?;
    if checks.causal.is_none() {
        // A figure of an earlier run's causal test (the folder was reused with --force) would
        // not belong to these results.
        let stale = args.out_dir.join(CAUSAL_PNG);
        if stale.is_file() {
            std::fs::remove_file(&stale).with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }

    let secs = |d: std::time::Duration| d.as_secs_f64();
    let run = RunDetails {
        model: model_label,
        revision,
        commit,
        hook: hook.to_string(),
        adapter,
        variant: variant.to_string(),
        seconds: PhaseSeconds {
            fetch: secs(fetch_time),
            load: secs(times.load),
            pipelines: secs(times.pipelines),
            upload: secs(times.upload),
            forward: secs(times.forward),
            causal: secs(times.causal),
            total: secs(times.total),
        },
    };
    let summary = ChallengeSummary::new(
        shape.clone(),
        &found,
        checks.permutation.as_ref(),
        checks.single_token.as_ref(),
        checks.causal.as_ref(),
        &files,
        run,
    );
    Ok(ChallengeOutcome {
        summary,
        terminal_summary: terminal_summary(&info, &found, &checks, &times),
        shape,
        activations: acts.rows,
        neurons,
        files,
        times,
        model: resolved,
    })
}

/// `[C, n, width]` when every category has `n` words, else `[total words, width]`.
pub fn activations_shape(sizes: &[usize], width: usize) -> Vec<usize> {
    match sizes {
        [first, rest @ ..] if rest.iter().all(|n| n == first) => vec![sizes.len(), *first, width],
        _ => vec![sizes.iter().sum(), width],
    }
}

/// The `layout` metadata entry that goes with [`activations_shape`].
fn layout_text(shape: &[usize]) -> &'static str {
    if shape.len() == 3 {
        "[category, word, neuron]"
    } else {
        "[word, neuron]; rows in category order, category_offsets/category_sizes give each category's rows"
    }
}

/// Reads every category's list and checks it: at least two categories with distinct names, at
/// least two words each, no word twice in a list or in two categories.
fn read_categories(specs: &[CategorySpec]) -> Result<Vec<ListedCategory>> {
    if specs.len() < 2 {
        bail!(
            "the challenge needs at least 2 categories, got {}; pass --category NAME=FILE once per category",
            specs.len()
        );
    }
    let mut seen_names: HashMap<String, &str> = HashMap::new();
    for spec in specs {
        if let Some(other) = seen_names.insert(csv_name(&spec.name), &spec.name) {
            if other == spec.name {
                bail!("two categories are named {other:?}; give each category its own name");
            }
            bail!(
                "categories {other:?} and {:?} would share the neurons.csv columns mean_{}/std_{}; give them names that differ in letters or digits",
                spec.name,
                csv_name(other),
                csv_name(other)
            );
        }
    }
    let mut categories = Vec::new();
    // Word → (category index, line) of its first appearance in any earlier category.
    let mut owner: HashMap<String, (usize, usize)> = HashMap::new();
    for (c, spec) in specs.iter().enumerate() {
        let source = spec.source.describe();
        let words = spec.source.read().with_context(|| format!("category {}", spec.name))?;
        let mut lines: HashMap<&str, Vec<usize>> = HashMap::new();
        for w in &words {
            lines.entry(&w.word).or_default().push(w.line);
        }
        if let Some(w) = words.iter().find(|w| lines[w.word.as_str()].len() > 1) {
            bail!(
                "word list {source} has {:?} on lines {}; keep the first and delete the others",
                w.word,
                join_and(&lines[w.word.as_str()])
            );
        }
        if words.len() < 2 {
            bail!(
                "category {} ({source}) has {} word; the t-test needs at least 2 words per category: add words to it",
                spec.name,
                words.len()
            );
        }
        for w in &words {
            if let Some(&(other, line)) = owner.get(&w.word) {
                let first: &ListedCategory = &categories[other];
                bail!(
                    "word {:?} is in category {} ({} line {line}) and in category {} ({source} line {}); a word can belong to one category only: delete it from one list",
                    w.word,
                    first.name,
                    first.source,
                    spec.name,
                    w.line
                );
            }
        }
        for w in &words {
            owner.insert(w.word.clone(), (c, w.line));
        }
        categories.push(ListedCategory { name: spec.name.clone(), source, words });
    }
    Ok(categories)
}

/// `3 and 17`, `3, 17 and 40`.
fn join_and(lines: &[usize]) -> String {
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match text.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => text.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_arguments_need_a_name_and_a_file() {
        let spec = CategorySpec::parse("adjectives=lists/adj.txt").unwrap();
        assert_eq!(spec.name, "adjectives");
        assert_eq!(spec.source, WordSource::File("lists/adj.txt".into()));
        // Only the first '=' separates: file names may contain '='.
        assert_eq!(CategorySpec::parse("a=b=c").unwrap().source, WordSource::File("b=c".into()));
        assert!(CategorySpec::parse("verbs").unwrap_err().to_string().contains("no '='"));
        assert!(CategorySpec::parse(" =x.txt").unwrap_err().to_string().contains("empty name"));
        assert!(CategorySpec::parse("verbs=").unwrap_err().to_string().contains("names no file"));
    }

    #[test]
    fn shape_is_three_dimensional_only_for_equal_categories() {
        assert_eq!(activations_shape(&[100, 100], 3072), vec![2, 100, 3072]);
        assert_eq!(activations_shape(&[3, 3, 3], 8), vec![3, 3, 8]);
        assert_eq!(activations_shape(&[3, 2, 4], 8), vec![9, 8]);
    }

    #[test]
    fn lines_are_joined_for_people() {
        assert_eq!(join_and(&[3, 17]), "3 and 17");
        assert_eq!(join_and(&[3, 17, 40]), "3, 17 and 40");
    }
}
