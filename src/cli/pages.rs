//! `neoprobe pages`: the static site of neuron pages.

use super::terminal::Terminal;
use clap::Args;
use neoprobe::engine::ModelSource;
use neoprobe::hub::FetchOptions;
use neoprobe::pages;
use std::path::PathBuf;

#[derive(Args)]
pub struct PagesCli {
    /// Output folders of `sweep vocab`, `sweep corpus` (or `sweep merge`), `sweep logits` and
    /// `challenge`, in any order; at least one, at most one of each kind, of one model and hook.
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,
    /// The site's folder; one that already holds files is refused unless --force.
    #[arg(long, value_name = "SITE", default_value = "pages")]
    pub out_dir: PathBuf,
    /// Write into a folder that holds files, replacing the site's files there.
    #[arg(long)]
    pub force: bool,
    /// Model folder whose tokenizer.json gives the texts of the token ids the vocab and logit
    /// sweeps list [default: the model the sweeps name, as a folder or from the hub's cache].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
}

pub fn run(args: PagesCli) -> anyhow::Result<()> {
    let notes = Terminal::new();
    let outcome = pages::build_pages(
        &pages::PagesArgs {
            dirs: args.dirs,
            out_dir: args.out_dir.clone(),
            force: args.force,
            model: args.model_dir.map(ModelSource::Dir),
            fetch: FetchOptions::default(),
        },
        &notes,
    )?;
    println!(
        "{} neuron pages and the index, {:.1} MB, in {}: read {:.2} s, written {:.2} s",
        outcome.neurons,
        outcome.bytes as f64 / 1e6,
        outcome.site.display(),
        outcome.read_time.as_secs_f64(),
        outcome.write_time.as_secs_f64()
    );
    notes.done(&format!("open {}", outcome.site.join(pages::INDEX_HTML).display()));
    Ok(())
}
