//! `neoprobe pages`: a static site to browse what each neuron does, built from the outputs of
//! `sweep vocab|corpus|logits` (merged shards included) and of `challenge`. One index of every
//! neuron (sortable, filterable) and one page per neuron: its top contexts with every token
//! coloured by its activation, samples from each activation interval, the histogram of its
//! activations over the corpus, its top tokens alone, the tokens it promotes and suppresses, and
//! the challenge's per-word values. The site needs no network and no server: its pages, one
//! style sheet and the index's small script open from `file://`. Design: docs/pages.md.

mod html;

use crate::challenge::files::{ACTIVATIONS_SAFETENSORS, NEURONS_CSV};
use crate::engine::ModelSource;
use crate::hub::FetchOptions;
use crate::notes::Notes;
use crate::out_dir::{check_out_dir, Staging};
use crate::sweep::corpus::CorpusOutput;
use crate::sweep::files::{SweepFile, TokenLists};
use crate::sweep::{CORPUS_TOPK, LOGITS_TOPK, VOCAB_TOPK};
use crate::tokenize::Tokenizer;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const INDEX_HTML: &str = "index.html";
pub const STYLE_CSS: &str = "style.css";
pub const NEURONS_DIR: &str = "neurons";

#[derive(Clone, Debug)]
pub struct PagesArgs {
    /// Output folders of the sweeps and of a challenge, in any order.
    pub dirs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    /// Replace the site's files in an output folder that holds files.
    pub force: bool,
    /// Where the tokenizer is (for the texts of the token ids the vocab and logit sweeps list);
    /// `None`: the model the sweeps name.
    pub model: Option<ModelSource>,
    pub fetch: FetchOptions,
}

/// What `pages` did.
#[derive(Clone, Debug)]
pub struct PagesOutcome {
    pub neurons: usize,
    /// Pages written (the index included) and their bytes.
    pub pages: usize,
    pub bytes: u64,
    /// Reading the inputs, and building and writing the site.
    pub read_time: Duration,
    pub write_time: Duration,
    pub site: PathBuf,
}

/// A vocab or logits sweep: its lists and file.
pub struct TokenSweep {
    pub dir: PathBuf,
    pub file: SweepFile,
    pub lists: TokenLists,
    /// Per neuron: mean and SD (the vocab sweep).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// A challenge output: per neuron t and q, per category its words' values.
pub struct Challenge {
    pub dir: PathBuf,
    pub hook: String,
    pub t: Vec<f64>,
    pub q: Vec<f64>,
    pub categories: Vec<Category>,
}

pub struct Category {
    pub name: String,
    pub words: Vec<String>,
    /// `[words, neurons]`.
    pub values: Vec<f32>,
}

/// Everything the site is built from.
pub struct Inputs {
    pub vocab: Option<TokenSweep>,
    pub corpus: Option<(PathBuf, CorpusOutput)>,
    pub logits: Option<TokenSweep>,
    pub challenge: Option<Challenge>,
    pub width: usize,
    /// For the header: model, revision, hook, corpus.
    pub model: String,
    pub revision: Option<String>,
    pub hook: String,
    pub corpus_label: Option<String>,
    pub tokens: Option<Tokenizer>,
}

pub fn build_pages(args: &PagesArgs, notes: &dyn Notes) -> Result<PagesOutcome> {
    if args.dirs.is_empty() {
        bail!("no input folder; pass the output folders of neoprobe sweep vocab|corpus|logits and challenge");
    }
    check_out_dir(&args.out_dir, args.force, &[INDEX_HTML, STYLE_CSS], "the site's files")?;
    if args.out_dir.join(NEURONS_DIR).is_file() {
        bail!(
            "output folder {} has a file named {NEURONS_DIR} where the site's folder goes; move it or choose another --out-dir",
            args.out_dir.display()
        );
    }
    let started = Instant::now();
    let inputs = read_inputs(args, notes)?;
    let read_time = started.elapsed();
    let started = Instant::now();
    let staging = Staging::create(&args.out_dir)?;
    let (pages, bytes) = html::write_site(&staging.path, &inputs)?;
    publish(staging, &args.out_dir)?;
    Ok(PagesOutcome {
        neurons: inputs.width,
        pages,
        bytes,
        read_time,
        write_time: started.elapsed(),
        site: args.out_dir.clone(),
    })
}

/// Moves the staged site into place: the whole folder when `out` is new, else its files one by
/// one, the old `neurons` folder replaced.
fn publish(staging: Staging, out: &Path) -> Result<()> {
    if !out.exists() {
        return staging.publish(out, &[]).map(|_| ());
    }
    let old = out.join(NEURONS_DIR);
    if old.is_dir() {
        fs::remove_dir_all(&old).with_context(|| format!("cannot replace {}", old.display()))?;
    }
    for name in [STYLE_CSS, NEURONS_DIR, INDEX_HTML] {
        fs::rename(staging.path.join(name), out.join(name))
            .with_context(|| format!("cannot move {name} into output folder {}", out.display()))?;
    }
    Ok(())
}

/// What kind of output a folder is.
fn kinds_of(dir: &Path) -> Vec<&'static str> {
    [VOCAB_TOPK, CORPUS_TOPK, LOGITS_TOPK, ACTIVATIONS_SAFETENSORS]
        .into_iter()
        .filter(|name| dir.join(name).is_file())
        .collect()
}

fn read_inputs(args: &PagesArgs, notes: &dyn Notes) -> Result<Inputs> {
    let mut vocab: Option<TokenSweep> = None;
    let mut corpus: Option<(PathBuf, CorpusOutput)> = None;
    let mut logits: Option<TokenSweep> = None;
    let mut challenge: Option<Challenge> = None;
    for dir in &args.dirs {
        if !dir.is_dir() {
            bail!(
                "{} is not a folder; pass the output folders of neoprobe sweep and challenge",
                dir.display()
            );
        }
        let kinds = kinds_of(dir);
        if kinds.is_empty() {
            bail!(
                "{} is no sweep or challenge output (it holds none of {VOCAB_TOPK}, {CORPUS_TOPK}, {LOGITS_TOPK} and {ACTIVATIONS_SAFETENSORS}); pass folders written by neoprobe sweep or challenge",
                dir.display()
            );
        }
        for kind in kinds {
            let taken = match kind {
                VOCAB_TOPK => vocab.as_ref().map(|s| &s.dir),
                CORPUS_TOPK => corpus.as_ref().map(|c| &c.0),
                LOGITS_TOPK => logits.as_ref().map(|s| &s.dir),
                _ => challenge.as_ref().map(|c| &c.dir),
            };
            if let Some(other) = taken {
                bail!(
                    "{} and {} both hold a {kind}; pass one output of each kind",
                    other.display(),
                    dir.display()
                );
            }
            match kind {
                VOCAB_TOPK => vocab = Some(read_token_sweep(dir, VOCAB_TOPK, true)?),
                LOGITS_TOPK => logits = Some(read_token_sweep(dir, LOGITS_TOPK, false)?),
                CORPUS_TOPK => corpus = Some((dir.clone(), CorpusOutput::read(dir)?)),
                _ => challenge = Some(read_challenge(dir)?),
            }
        }
    }

    // One model, one hook, one width.
    let sweeps: Vec<(PathBuf, &SweepFile)> = [
        vocab.as_ref().map(|s| (s.dir.join(VOCAB_TOPK), &s.file)),
        corpus.as_ref().map(|(d, c)| (d.join(CORPUS_TOPK), &c.file)),
        logits.as_ref().map(|s| (s.dir.join(LOGITS_TOPK), &s.file)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for pair in sweeps.windows(2) {
        let ((pa, a), (pb, b)) = (&pair[0], &pair[1]);
        if a.meta("model_sha256", pa)? != b.meta("model_sha256", pb)? {
            bail!(
                "{} and {} are sweeps of different models (model_sha256 differs); pass the sweeps of one model",
                pa.display(),
                pb.display()
            );
        }
    }
    let mut hook: Option<(String, PathBuf)> = None;
    let activation_hooks = [
        vocab
            .as_ref()
            .map(|s| (s.file.meta("hook", &s.dir.join(VOCAB_TOPK)).map(str::to_string), s.dir.clone())),
        corpus
            .as_ref()
            .map(|(d, c)| (c.file.meta("hook", &d.join(CORPUS_TOPK)).map(str::to_string), d.clone())),
        challenge.as_ref().map(|c| (Ok(c.hook.clone()), c.dir.clone())),
    ];
    for (found, dir) in activation_hooks.into_iter().flatten() {
        let found = found?;
        match &hook {
            Some((h, other)) if *h != found => bail!(
                "{} is of hook {h} but {} is of hook {found}; pass outputs of one hook",
                other.display(),
                dir.display()
            ),
            Some(_) => {}
            None => hook = Some((found, dir)),
        }
    }
    if let (Some(l), Some((h, dir))) = (&logits, &hook) {
        let path = l.dir.join(LOGITS_TOPK);
        let layer = l.file.meta_usize("layer", &path)?;
        if !h.starts_with(&format!("blocks.{layer}.mlp.")) {
            bail!(
                "{} is of block {layer} but {} is of hook {h}; pass a logit sweep of that hook's block",
                path.display(),
                dir.display()
            );
        }
    }
    let hook = match (hook, &logits) {
        (Some((h, _)), _) => h,
        (None, Some(l)) => {
            format!("blocks.{}.mlp.hook_post", l.file.meta_usize("layer", &l.dir.join(LOGITS_TOPK))?)
        }
        (None, None) => unreachable!("every folder holds one kind at least"),
    };
    let widths: Vec<(usize, PathBuf)> = [
        vocab.as_ref().map(|s| (s.lists.neurons(), s.dir.clone())),
        corpus.as_ref().map(|(d, c)| (c.top.width(), d.clone())),
        logits.as_ref().map(|s| (s.lists.neurons(), s.dir.clone())),
        challenge.as_ref().map(|c| (c.t.len(), c.dir.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let width = widths[0].0;
    if let Some((w, dir)) = widths.iter().find(|(w, _)| *w != width) {
        bail!(
            "{} describes {width} neurons but {} describes {w}; pass outputs of one model and hook",
            widths[0].1.display(),
            dir.display()
        );
    }

    // The header and the tokenizer come from the first sweep (or the challenge).
    let (model, revision, commit) = match sweeps.first() {
        Some((_, file)) => (
            file.metadata.get("model").cloned().unwrap_or_default(),
            file.metadata.get("revision").cloned(),
            file.metadata.get("commit").cloned(),
        ),
        None => {
            let c = challenge.as_ref().expect("a challenge when there is no sweep");
            let file = SweepFile::read(&c.dir.join(ACTIVATIONS_SAFETENSORS))?;
            let m = &file.metadata;
            (
                m.get("model").or_else(|| m.get("model_dir")).cloned().unwrap_or_default(),
                m.get("revision").cloned(),
                m.get("commit").cloned(),
            )
        }
    };
    let corpus_label = match &corpus {
        Some((d, c)) => {
            let path = d.join(CORPUS_TOPK);
            let texts: Vec<String> = serde_json::from_str(c.file.meta("texts", &path)?).unwrap_or_default();
            let names: Vec<String> = texts
                .iter()
                .map(|t| Path::new(t).file_name().map_or(t.clone(), |n| n.to_string_lossy().into_owned()))
                .collect();
            Some(format!(
                "{} ({} tokens, contexts of {})",
                names.join(", "),
                c.file.meta("n_tokens", &path)?,
                c.file.meta("context", &path)?
            ))
        }
        None => None,
    };
    let tokens = if vocab.is_some() || logits.is_some() {
        let source = match &args.model {
            Some(source) => source.clone(),
            None if Path::new(&model).join("tokenizer.json").is_file() => ModelSource::Dir(PathBuf::from(&model)),
            None if commit.is_some() => ModelSource::Hub { id: model.clone(), revision: commit.clone() },
            None => bail!(
                "cannot find the tokenizer of model {model:?} the sweeps name; pass --model-dir with the model's folder"
            ),
        };
        let resolved = source.resolve(&args.fetch, notes)?;
        let tokenizer = Tokenizer::load(&resolved.dir.join("tokenizer.json"))?;
        Some(tokenizer)
    } else {
        None
    };
    Ok(Inputs { vocab, corpus, logits, challenge, width, model, revision, hook, corpus_label, tokens })
}

fn read_token_sweep(dir: &Path, name: &str, moments: bool) -> Result<TokenSweep> {
    let path = dir.join(name);
    let file = SweepFile::read(&path)?;
    let lists = TokenLists::read_from(&file, &path)?;
    let (mean, std) = if moments {
        let n = lists.neurons();
        (file.f32s("mean", &[n], &path)?.to_vec(), file.f32s("std", &[n], &path)?.to_vec())
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(TokenSweep { dir: dir.to_path_buf(), file, lists, mean, std })
}

/// A challenge's `activations.safetensors` and `neurons.csv`.
fn read_challenge(dir: &Path) -> Result<Challenge> {
    let path = dir.join(ACTIVATIONS_SAFETENSORS);
    let file = SweepFile::read(&path)?;
    let hook = file.meta("hook", &path)?.to_string();
    #[derive(serde::Deserialize)]
    struct Listed {
        name: String,
        offset: usize,
        size: usize,
        words: Vec<String>,
    }
    let listed: Vec<Listed> = serde_json::from_str(file.meta("categories", &path)?).map_err(|e| {
        anyhow!("metadata entry categories of {} is not a category list ({e})", path.display())
    })?;
    let shape = file.tensors.get("activations").map(|t| t.shape.clone()).ok_or_else(|| {
        anyhow!("{} has no tensor activations; was it written by neoprobe challenge?", path.display())
    })?;
    let width = *shape.last().unwrap_or(&0);
    let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
    let values = file.f32s("activations", &shape, &path)?;
    let mut categories = Vec::new();
    for c in listed {
        if c.offset + c.size > rows || c.words.len() != c.size {
            bail!(
                "{} lists category {} beyond its {rows} rows; run the challenge again",
                path.display(),
                c.name
            );
        }
        categories.push(Category {
            name: c.name,
            words: c.words,
            values: values[c.offset * width..(c.offset + c.size) * width].to_vec(),
        });
    }
    let csv_path = dir.join(NEURONS_CSV);
    let csv = fs::read_to_string(&csv_path).with_context(|| format!("cannot read {}", csv_path.display()))?;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            anyhow!("{} has no column {name}; was it written by neoprobe challenge?", csv_path.display())
        })
    };
    let (ti, qi) = (column("t")?, column("q_bh")?);
    let (mut t, mut q) = (Vec::new(), Vec::new());
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let number = |at: usize| -> Result<f64> {
            let cell = cells.get(at).copied().unwrap_or("");
            // An empty cell (a value that is not finite) reads as NaN.
            if cell.is_empty() {
                return Ok(f64::NAN);
            }
            cell.parse()
                .map_err(|_| anyhow!("{} line {} has {cell:?}, not a number", csv_path.display(), i + 2))
        };
        t.push(number(ti)?);
        q.push(number(qi)?);
    }
    if t.len() != width {
        bail!(
            "{} has {} neurons but {} has {width}; run the challenge again",
            csv_path.display(),
            t.len(),
            path.display()
        );
    }
    Ok(Challenge { dir: dir.to_path_buf(), hook, t, q, categories })
}
