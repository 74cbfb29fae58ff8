//! The `neoprobe` command line: flags, one file per command, and the terminal. The library
//! never prints; this is where its values are rendered and its notes reach stderr.

mod bench;
mod challenge;
mod explain;
mod extract;
mod interventions;
mod model_args;
mod pages;
mod patch;
mod sweep;
mod terminal;
mod trace;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "neoprobe",
    bin_name = "neoprobe",
    version,
    about = "GPT-Neo activations from WGSL kernels on any GPU, and the grammar-tuning challenge"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Do GPT-Neo's MLP neurons prefer nouns or verbs? Activations, statistics, figures and a report
    ///
    /// Runs every word of each category alone (as written, or after one space with
    /// --prefix-space), in packed GPU batches, through the model up to blocks.L.mlp.hook_pre
    /// (the c_fc output after matmul and bias, before GELU), pools each word's tokens into one
    /// row, and compares the categories neuron by neuron: Welch's t-test of the first category
    /// against the second (Bonferroni and Benjamini-Hochberg corrected), Cohen's d, and means and
    /// SDs for every category. Two checks go beside the counts: label shuffles (how many
    /// neurons chance alone makes significant: --permutations) and the same test on the words
    /// that are one token long (a control for word length).
    ///
    /// The default is the challenge itself: the 100 verbs and 100 nouns of data/verbs.txt and
    /// data/nouns.txt (built into the binary) through EleutherAI/gpt-neo-125m at a pinned commit,
    /// downloaded once into the Hugging Face cache.
    ///
    /// Files written into --out-dir (all at once, after the whole run succeeded):
    ///   activations.npy          float32 [C, n, width] when all C categories have n words
    ///                            (default [2, 100, 3072]: 0 = verbs, 1 = nouns); with unequal
    ///                            sizes [total words, width], rows in category order
    ///   activations.safetensors  the same array as tensor `activations`, with metadata:
    ///                            layout, categories (JSON: name, source, offset, size, words),
    ///                            category_sizes, category_offsets, token_ids per word, model and
    ///                            revision/commit (or model_dir), hook, pooling, prefix_space,
    ///                            adapter, kernel_variant, neoprobe_version
    ///   neurons.csv              per neuron: mean and SD per category, t, p, cohen_d,
    ///                            p_bonferroni, q_bh
    ///   heatmap.png              words × neurons, grouped by category
    ///   top_neurons.png          every word's activation for the neurons with the largest |t|
    ///   offsets.png              histogram of the per-neuron means
    ///   report.md                the findings with their numbers and the figures, the
    ///                            checks, and with --sweep what the top neurons respond to
    ///
    /// A summary goes to stdout (JSON with --json); notes and progress to stderr.
    #[command(verbatim_doc_comment)]
    Challenge(challenge::ChallengeCli),
    /// Run words or a text through the model and save the activations of any hook points.
    Extract(extract::ExtractCli),
    /// Follow one neuron's value for one word from the weights through the kernel to the output
    ///
    /// Runs WORD alone (as the challenge does) up to blocks.L.mlp.hook_post and shows, for each of
    /// its tokens, how c_fc computed neuron N: ln_2's statistics and output x, the weight row and
    /// bias, the 768 products and the largest of them, which workgroup and invocation of the
    /// kernel variant computed it (checked against ids the kernel itself records), its order of
    /// summation replayed in f32 beside the GPU's value and the exact sum, and gelu_new step by
    /// step. Writes explain.md, explain.json, contributions.png and tiles.png into --out-dir.
    #[command(verbatim_doc_comment)]
    Explain(explain::ExplainCli),
    /// Every dispatch of the forward: module, kernel, grid, FLOPs, bytes, time
    ///
    /// Runs the input (default: the challenge's 200 words, each alone, in one packed batch) up to
    /// --hook once to compile and warm up, then once more with every dispatch described and
    /// timed: GPU timestamps where the adapter has usable ones, else the wall clock around each
    /// dispatch submitted alone. Prints a table (per dispatch: module, kernel file, grid,
    /// workgroup size, GFLOP, MB moved, arithmetic intensity, time, share, GFLOP/s), totals per
    /// kernel and the slowest five; writes trace.png and trace.json into --out-dir.
    #[command(verbatim_doc_comment)]
    Trace(trace::TraceCli),
    /// Check this adapter's results against an f64 reference of the same weights
    ///
    /// For every kernel variant the adapter runs (or each --kernel-variant): each kernel against
    /// the f64 reference at the model's real shapes and weights; the forward on the challenge's
    /// words and on a built-in text longer than the local window against the f64 reference
    /// forward, at every hook of a global and a local block and at the logits; and for the
    /// pinned EleutherAI/gpt-neo-125m, the loss on "<|endoftext|>Hello world!" against
    /// TransformerLens' published 4.900552272796631. Prints one table (check, max abs error,
    /// tolerance, pass) and exits 0 only if every check passes.
    #[command(verbatim_doc_comment)]
    Verify(verify::VerifyCli),
    /// Activation patching: how much each hook and position restores of the clean answer
    ///
    /// Runs --clean and --corrupt (texts that tokenize to the same length), then for every hook
    /// --hook names and every position the corrupt text again with that one activation taken from
    /// the clean run, and reads logit(--answer) − logit(--wrong) at the last position.
    ///
    /// Files written into --out-dir (all at once, after the whole run succeeded):
    ///   patch_logit_diff.npy  float32 [hooks, positions]: the patched runs' logit differences
    ///   patch.npy             float32 [hooks, positions]: (patched − corrupt) / (clean − corrupt)
    ///   patch.png             the normalized values as a heatmap, the tokens as labels
    ///   patch.json            the tokens, hooks, shape, both arrays, clean and corrupt differences
    #[command(verbatim_doc_comment)]
    Patch(patch::PatchCli),
    /// Time the kernels, the challenge forward and a whole run on this adapter (no download).
    Bench(bench::BenchCli),
    /// Sweep the vocabulary, a corpus or the unembedding: per neuron what it responds to and writes.
    Sweep(sweep::SweepCli),
    /// A static site to browse what each neuron does, from the sweeps' and a challenge's outputs
    ///
    /// Writes into --out-dir (all at once, after the whole site is built):
    ///   index.html      every neuron in one table: selectivity, mean, SD and max alone, max in
    ///                   the corpus, the challenge's t and q, the top tokens alone; click a
    ///                   column to sort, type to filter
    ///   neurons/N.html  per neuron: its top contexts with every token coloured by its
    ///                   activation, samples from each activation interval, the histogram of its
    ///                   activations over the corpus, its top and bottom tokens alone, the tokens
    ///                   it promotes and suppresses, and the challenge's words
    ///   style.css       the pages' style
    ///
    /// The site opens from file:// or any static server and loads nothing from the network.
    #[command(verbatim_doc_comment)]
    Pages(pages::PagesCli),
}

/// Parses the command line, runs the command, and turns an error into one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Extract(args) => extract::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Challenge(args) => challenge::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Patch(args) => patch::run(args),
        Command::Pages(args) => pages::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", neoprobe::error::one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}
