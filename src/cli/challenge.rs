//! `neoprobe challenge`: do GPT-Neo's MLP neurons prefer nouns or verbs?

use super::model_args::ModelArgs;
use super::terminal::Terminal;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use neoprobe::challenge::causal::{CPU_RANDOM_SETS, DEFAULT_CAUSAL_NEURONS, GPU_RANDOM_SETS};
use neoprobe::challenge::permutation::{DEFAULT_PERMUTATIONS as PERMUTATIONS, DEFAULT_SEED as SEED};
use neoprobe::challenge::run::DEFAULT_OUT_DIR;
use neoprobe::challenge::{run_challenge, Ablation, CategorySpec, CausalArgs, ChallengeArgs};
use neoprobe::engine::ModelSource;
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::model::DEFAULT_LAYER;
use neoprobe::pool::Pool;
use std::path::PathBuf;

#[derive(Args)]
pub struct ChallengeCli {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Verb list: UTF-8, one word per line [default: data/verbs.txt, built in].
    #[arg(long, value_name = "FILE", conflicts_with = "category")]
    pub verbs: Option<PathBuf>,
    /// Noun list: UTF-8, one word per line [default: data/nouns.txt, built in].
    #[arg(long, value_name = "FILE", conflicts_with = "category")]
    pub nouns: Option<PathBuf>,
    /// A category and its word list, instead of verbs and nouns; repeat it (at least 2). The
    /// t-test compares the first two; every category gets means and SDs.
    #[arg(long, value_name = "NAME=FILE")]
    pub category: Vec<String>,
    /// The block whose mlp.hook_pre is read.
    #[arg(long, value_name = "L", default_value_t = DEFAULT_LAYER)]
    pub layer: usize,
    /// How each word's tokens become one row.
    #[arg(
        long,
        value_name = "POOL",
        default_value = "mean",
        value_parser = PossibleValuesParser::new(["mean", "first", "last", "max"])
            .map(|name| Pool::from_str(&name, false).expect("every listed pooling is a Pool"))
    )]
    pub pool: Pool,
    /// Put one space before each word before tokenizing.
    #[arg(long)]
    pub prefix_space: bool,
    /// Output folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_OUT_DIR)]
    pub out_dir: PathBuf,
    /// Write into an output folder that holds files, replacing the challenge's files there.
    #[arg(long)]
    pub force: bool,
    /// Kernel implementation [default: the fastest for the adapter].
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub kernel_variant: Option<Variant>,
    /// Tokens per GPU batch; words are grouped into batches of at most N tokens, never split
    /// [default: from the adapter's limits].
    #[arg(long, value_name = "N")]
    pub batch_tokens: Option<usize>,
    /// Label shuffles of the permutation test: the neurons at BH q < 0.05 and Bonferroni
    /// p < 0.05 are recounted with the first two categories' labels shuffled N times, and the
    /// observed counts set against that null (mean, 95th percentile, p-value); 0 skips it.
    #[arg(long, value_name = "N", default_value_t = PERMUTATIONS)]
    pub permutations: usize,
    /// Seed of the label shuffles.
    #[arg(long, value_name = "S", default_value_t = SEED)]
    pub seed: u64,
    /// Output folder of `neoprobe sweep vocab`, `corpus` or `logits` on the same model and block
    /// (repeatable): report.md then shows each top neuron's top tokens alone, top corpus contexts
    /// and the tokens it promotes and suppresses.
    #[arg(long = "sweep", value_name = "DIR")]
    pub sweeps: Vec<PathBuf>,
    /// The causal test: the N neurons with the largest t and the N with the smallest are ablated
    /// at blocks.L.mlp.hook_post, and each word's next-token distribution compared with the clean
    /// one (KL), against random sets of N neurons.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAUSAL_NEURONS)]
    pub causal_neurons: usize,
    #[arg(
        long,
        value_name = "R",
        help = format!(
            "Random sets of the causal test's null [default: {GPU_RANDOM_SETS} on a GPU, {CPU_RANDOM_SETS} on a CPU driver]"
        )
    )]
    pub causal_sets: Option<usize>,
    /// How the causal test ablates: zero, or each neuron's mean over every token of the words.
    #[arg(long, value_name = "HOW", default_value = "zero", value_parser = PossibleValuesParser::new(["zero", "mean"])
        .map(|name| name.parse::<Ablation>().expect("every listed ablation parses")))]
    pub causal_ablation: Ablation,
    /// Skip the causal test (the forward then stops at block L).
    #[arg(long, conflicts_with_all = ["causal_neurons", "causal_sets", "causal_ablation"])]
    pub no_causal: bool,
    /// Print the summary as JSON on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ChallengeCli) -> anyhow::Result<()> {
    let categories = if args.category.is_empty() {
        CategorySpec::verbs_and_nouns(args.verbs, args.nouns)
    } else {
        args.category.iter().map(|arg| CategorySpec::parse(arg)).collect::<anyhow::Result<_>>()?
    };
    let notes = Terminal::new();
    let challenge = ChallengeArgs {
        model: args.model.source(),
        categories,
        layer: args.layer,
        pool: args.pool,
        prefix_space: args.prefix_space,
        out_dir: args.out_dir,
        force: args.force,
        variant: args.kernel_variant,
        fetch: FetchOptions::default(),
        batch_tokens: args.batch_tokens,
        permutations: args.permutations,
        seed: args.seed,
        sweeps: args.sweeps,
        causal: (!args.no_causal).then_some(CausalArgs {
            n_neurons: args.causal_neurons,
            random_sets: args.causal_sets,
            ablation: args.causal_ablation,
        }),
    };
    let outcome = run_challenge(&challenge, &notes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
    } else {
        print!("{}", outcome.terminal_summary);
    }
    let model = &outcome.model;
    if let (ModelSource::Hub { .. }, Some(commit)) = (&challenge.model, &model.commit) {
        notes.done(&format!(
            "model files from {} (commit {commit}; {:.3} s to find or fetch them)",
            model.dir.display(),
            model.fetch_time.as_secs_f64()
        ));
    }
    notes.done(&format!("wrote {} files into {}", outcome.files.len(), challenge.out_dir.display()));
    Ok(())
}
