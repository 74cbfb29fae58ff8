//! `neoprobe._native`: the library's calls for Python. The pure-Python package `neoprobe` wraps
//! this module; what crosses the boundary is plain data (str, int, list, bytearray, JSON text),
//! so numpy is never linked: arrays leave as the bytes of their float32 values and their shape,
//! and `np.frombuffer` makes them arrays without another copy.
//!
//! Every entry point releases the interpreter lock while the library works, turns a Rust panic
//! into `RuntimeError("internal error: …")`, and raises the library's errors as the exception
//! their kind calls for (`neoprobe::error::kind_of`), with the message the command line prints.

mod notes;

use neoprobe::challenge::{run_challenge, CategorySpec, CausalArgs, ChallengeArgs};
use neoprobe::engine::ModelSource;
use neoprobe::error::{kind_of, one_line, Kind};
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::model::{check_intervenable, Hook, InterventionKind};
use neoprobe::pool::Pool;
use neoprobe::session::{HookValues, Session, SessionInput, SessionRun};
use neoprobe::tokenize::WordSource;
use notes::PyNotes;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;

/// The library's error as a Python exception: its kind picks the class, the message is the one
/// line the command line prints after `error: `.
fn to_pyerr(error: &anyhow::Error) -> PyErr {
    let message = one_line(&format!("{error:#}"));
    match kind_of(error) {
        Kind::NotFound => PyFileNotFoundError::new_err(message),
        Kind::BadInput => PyValueError::new_err(message),
        Kind::Gpu | Kind::Download => PyRuntimeError::new_err(message),
        Kind::Interrupted => PyKeyboardInterrupt::new_err(message),
    }
}

/// An intervention kind by its command-line flag without the dashes (`ablate`, `mean-ablate`, …).
fn parse_intervention_kind(kind: &str) -> PyResult<InterventionKind> {
    Ok(match kind {
        "ablate" => InterventionKind::Ablate,
        "mean-ablate" => InterventionKind::MeanAblate,
        "set" => InterventionKind::Set,
        "scale" => InterventionKind::Scale,
        "steer" => InterventionKind::Steer,
        "patch" => InterventionKind::Patch,
        _ => return Err(PyValueError::new_err(format!("unknown intervention kind {kind:?}"))),
    })
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    format!("internal error: {what}")
}

/// Runs `f` with the interpreter lock held, a panic becoming `RuntimeError`.
fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => Err(PyRuntimeError::new_err(panic_message(panic))),
    }
}

/// Runs the library call `f` with the interpreter lock released. An exception raised meanwhile
/// by Python code the notes called (a progress callback, a signal handler on Ctrl-C) wins over
/// the result: it is what stopped the work, or the caller would have seen it at once.
fn detached<T: Send>(
    py: Python<'_>,
    notes: &PyNotes,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let result = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    let pending = notes.take_pending();
    match result {
        Err(panic) => Err(PyRuntimeError::new_err(panic_message(panic))),
        Ok(Err(error)) => Err(pending.unwrap_or_else(|| to_pyerr(&error))),
        Ok(Ok(value)) => match pending {
            Some(error) => Err(error),
            None => Ok(value),
        },
    }
}

fn parse_variant(name: Option<&str>) -> PyResult<Option<Variant>> {
    use clap::ValueEnum;
    name.map(|n| {
        Variant::from_str(n, false).map_err(|_| {
            let names: Vec<String> = Variant::value_variants().iter().map(|v| v.to_string()).collect();
            PyValueError::new_err(format!("kernel_variant {n:?} is not one of {}", names.join(", ")))
        })
    })
    .transpose()
}

fn parse_pool(name: Option<&str>) -> PyResult<Option<Pool>> {
    use clap::ValueEnum;
    name.map(|n| {
        Pool::from_str(n, false).map_err(|_| {
            PyValueError::new_err(format!("pool {n:?} is not one of mean, first, last, max, none"))
        })
    })
    .transpose()
}

/// One array for Python: its name, shape, pooling and float32 bytes (copied once, here).
type Array<'py> = (String, Vec<usize>, Option<String>, Bound<'py, PyByteArray>);

fn array<'py>(py: Python<'py>, values: HookValues) -> Array<'py> {
    let bytes = PyByteArray::new(py, as_bytes(&values.values));
    (values.hook.to_string(), values.shape, values.pooling.map(|p| p.to_string()), bytes)
}

fn as_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every byte pattern is a valid u8; the length is the same
    // memory measured in bytes.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// A model loaded onto the GPU, kept for any number of calls.
#[pyclass(frozen, module = "neoprobe._native")]
struct NativeModel {
    /// One call at a time uses the GPU; others wait with the interpreter lock released.
    session: Mutex<Session>,
    /// The folder the model was read from.
    #[pyo3(get)]
    model_dir: String,
    /// The hub id or the folder, for people.
    #[pyo3(get)]
    label: String,
    #[pyo3(get)]
    commit: Option<String>,
    #[pyo3(get)]
    adapter: String,
    #[pyo3(get)]
    kernel_variant: String,
    /// The model's config as JSON: the HF names and TransformerLens' names.
    #[pyo3(get)]
    config_json: String,
    /// Every hook point of the model, in the forward's order.
    #[pyo3(get)]
    hook_names: Vec<String>,
}

impl NativeModel {
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The model as later calls that read their own copy (challenge, verify, …) name it: the
    /// same folder, or the same hub repo pinned to the commit that was loaded.
    fn source(&self) -> ModelSource {
        let session = self.session();
        match (&session.source, &session.resolved.commit) {
            (ModelSource::Hub { id, .. }, Some(commit)) => {
                ModelSource::Hub { id: id.clone(), revision: Some(commit.clone()) }
            }
            (source, _) => source.clone(),
        }
    }
}

fn config_json(session: &Session) -> String {
    let c = session.config();
    let attention: Vec<&str> = c
        .attention_layers
        .iter()
        .map(|k| if *k == neoprobe::model::AttentionKind::Global { "global" } else { "local" })
        .collect();
    serde_json::json!({
        // TransformerLens' HookedTransformerConfig names.
        "n_layers": c.num_layers,
        "d_model": c.hidden_size,
        "d_mlp": c.intermediate_size,
        "n_heads": c.num_heads,
        "d_head": c.head_dim(),
        "d_vocab": c.vocab_size,
        "d_vocab_out": c.vocab_size,
        "n_ctx": c.max_position_embeddings,
        "window_size": c.window_size,
        "attn_types": attention,
        "eps": c.layer_norm_epsilon,
        "act_fn": "gelu_new",
        "normalization_type": "LN",
        "positional_embedding_type": "standard",
        "original_architecture": "GPTNeoForCausalLM",
        // HF's config.json names.
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_layers": c.num_layers,
        "num_heads": c.num_heads,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position_embeddings,
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "attention_layers": attention,
    })
    .to_string()
}

#[pymethods]
impl NativeModel {
    /// Loads a model: `kind` "hub" (`location` a repo id, `revision` optional) or "dir"
    /// (`location` a folder).
    #[staticmethod]
    #[pyo3(signature = (kind, location, revision, kernel_variant, batch_tokens, notes))]
    fn open(
        py: Python<'_>,
        kind: &str,
        location: &str,
        revision: Option<String>,
        kernel_variant: Option<&str>,
        batch_tokens: Option<usize>,
        notes: Py<PyAny>,
    ) -> PyResult<NativeModel> {
        guarded(|| {
            let source = match kind {
                "hub" => ModelSource::Hub { id: location.to_string(), revision },
                "dir" => ModelSource::Dir(PathBuf::from(location)),
                _ => return Err(PyValueError::new_err(format!("unknown model source kind {kind:?}"))),
            };
            let variant = parse_variant(kernel_variant)?;
            let notes = PyNotes::new(notes);
            let session = detached(py, &notes, || {
                Session::open(source, &FetchOptions::default(), variant, batch_tokens, &notes)
            })?;
            let hook_names = Hook::all(session.config()).iter().map(Hook::to_string).collect();
            Ok(NativeModel {
                model_dir: session.resolved.dir.display().to_string(),
                label: session.resolved.label.clone(),
                commit: session.resolved.commit.clone(),
                adapter: session.engine.gpu.adapter_name(),
                kernel_variant: session.engine.kernels.variant.to_string(),
                config_json: config_json(&session),
                hook_names,
                session: Mutex::new(session),
            })
        })
    }

    /// The token ids of `text` as written (no BOS), with one space before it if `prefix_space`.
    fn encode(&self, py: Python<'_>, text: &str, prefix_space: bool) -> PyResult<Vec<u32>> {
        guarded(|| {
            let session = self.session();
            let text = if prefix_space { format!(" {text}") } else { text.to_string() };
            py.detach(|| session.tokenizer().encode(&text)).map_err(|e| to_pyerr(&e))
        })
    }

    /// The text of each token id, decoded alone.
    fn token_texts(&self, ids: Vec<u32>) -> PyResult<Vec<String>> {
        guarded(|| {
            let session = self.session();
            let vocab = session.config().vocab_size;
            if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(PyValueError::new_err(format!(
                    "token id {id} is not in the vocabulary (ids 0 to {})",
                    vocab - 1
                )));
            }
            Ok(ids.iter().map(|&id| session.tokenizer().token_text(id)).collect())
        })
    }

    /// The hooks `pattern` names (a hook name, the HF path, or a pattern with `*`) in the
    /// forward's order, or the error a run naming it gets; with `intervenable`, also the error an
    /// intervention on any of them gets. No GPU work.
    fn expand_hooks(&self, py: Python<'_>, pattern: &str, intervenable: bool) -> PyResult<Vec<String>> {
        guarded(|| {
            let hooks = py.detach(|| -> anyhow::Result<Vec<String>> {
                let session = self.session();
                let hooks = Hook::expand(pattern, session.config())?;
                if intervenable {
                    for &hook in &hooks {
                        check_intervenable(hook)?;
                    }
                }
                Ok(hooks.iter().map(Hook::to_string).collect())
            });
            hooks.map_err(|e| to_pyerr(&e))
        })
    }

    /// Runs the input (`kind` "text" with a str, "words" with a list of str, "tokens" with a list
    /// of lists of ids) and returns every named hook's array, the logits' if `logits`, and each
    /// sequence's length.
    #[pyo3(signature = (kind, input, names, pool, prefix_space, logits, interventions, notes))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        input: &Bound<'py, PyAny>,
        names: Vec<String>,
        pool: Option<&str>,
        prefix_space: bool,
        logits: bool,
        interventions: Vec<(String, String)>,
        notes: Py<PyAny>,
    ) -> PyResult<(Vec<Array<'py>>, Option<Array<'py>>, Vec<usize>)> {
        guarded(|| {
            let input = match kind {
                "text" => SessionInput::Text(input.extract()?),
                "words" => SessionInput::Words(input.extract()?),
                "tokens" => SessionInput::Tokens(input.extract()?),
                _ => return Err(PyValueError::new_err(format!("unknown input kind {kind:?}"))),
            };
            let interventions = interventions
                .into_iter()
                .map(|(kind, text)| Ok((parse_intervention_kind(&kind)?, text)))
                .collect::<PyResult<Vec<_>>>()?;
            let run = SessionRun {
                input,
                hooks: names,
                pool: parse_pool(pool)?,
                prefix_space,
                logits,
                interventions,
            };
            let notes = PyNotes::new(notes);
            let output = detached(py, &notes, || self.session().run(&run, &notes))?;
            let hooks = output.hooks.into_iter().map(|h| array(py, h)).collect();
            Ok((hooks, output.logits.map(|l| array(py, l)), output.lengths))
        })
    }

    /// `neoprobe challenge` into `out_dir`: its `--json` summary (as JSON text), the files, and
    /// the activations' shape and float32 bytes.
    #[pyo3(signature = (out_dir, force, categories, layer, pool, prefix_space, permutations, seed, sweeps, causal, notes))]
    #[allow(clippy::too_many_arguments)]
    fn challenge<'py>(
        &self,
        py: Python<'py>,
        out_dir: PathBuf,
        force: bool,
        categories: Option<Vec<(String, PathBuf)>>,
        layer: usize,
        pool: &str,
        prefix_space: bool,
        permutations: usize,
        seed: u64,
        sweeps: Vec<PathBuf>,
        causal: Option<(usize, Option<usize>, String)>,
        notes: Py<PyAny>,
    ) -> PyResult<(String, Vec<PathBuf>, Vec<usize>, Bound<'py, PyByteArray>)> {
        guarded(|| {
            let pool = parse_pool(Some(pool))?.expect("a name was given");
            let categories = match categories {
                None => CategorySpec::verbs_and_nouns(None, None),
                Some(list) => list
                    .into_iter()
                    .map(|(name, path)| CategorySpec { name, source: WordSource::File(path) })
                    .collect(),
            };
            let source = self.source();
            let session = self.session();
            let args = ChallengeArgs {
                model: source,
                categories,
                layer,
                pool,
                prefix_space,
                out_dir,
                force,
                variant: Some(session.engine.kernels.variant),
                fetch: FetchOptions::default(),
                batch_tokens: session.batch_tokens,
                permutations,
                seed,
                sweeps,
                causal: match causal {
                    None => None,
                    Some((n_neurons, random_sets, ablation)) => {
                        let ablation = ablation.parse().map_err(|e: anyhow::Error| to_pyerr(&e))?;
                        Some(CausalArgs { n_neurons, random_sets, ablation })
                    }
                },
            };
            drop(session);
            let notes = PyNotes::new(notes);
            let outcome = detached(py, &notes, || run_challenge(&args, &notes))?;
            let summary = serde_json::to_string(&outcome.summary).map_err(|e| to_pyerr(&e.into()))?;
            let activations = PyByteArray::new(py, as_bytes(&outcome.activations));
            Ok((summary, outcome.files, outcome.shape, activations))
        })
    }

    /// `neoprobe explain` into `out_dir`: the `--json` explanation and the files.
    #[pyo3(signature = (word, neuron, layer, prefix_space, out_dir, force, notes))]
    #[allow(clippy::too_many_arguments)]
    fn explain(
        &self,
        py: Python<'_>,
        word: String,
        neuron: usize,
        layer: usize,
        prefix_space: bool,
        out_dir: PathBuf,
        force: bool,
        notes: Py<PyAny>,
    ) -> PyResult<(String, Vec<PathBuf>)> {
        guarded(|| {
            let args = neoprobe::explain::ExplainArgs {
                model: self.source(),
                fetch: FetchOptions::default(),
                word,
                neuron,
                layer,
                prefix_space,
                variant: Some(self.session().engine.kernels.variant),
                out_dir,
                force,
            };
            let notes = PyNotes::new(notes);
            let outcome = detached(py, &notes, || neoprobe::explain::explain(&args, &notes))?;
            Ok((serde_json::to_string(&outcome.explanation).map_err(|e| to_pyerr(&e.into()))?, outcome.files))
        })
    }

    /// `neoprobe trace` into `out_dir` (`words` or `text` a file; neither: the challenge's
    /// words): the `--json` report and the files.
    #[pyo3(signature = (words, text, hook, out_dir, force, notes))]
    #[allow(clippy::too_many_arguments)]
    fn trace(
        &self,
        py: Python<'_>,
        words: Option<PathBuf>,
        text: Option<PathBuf>,
        hook: String,
        out_dir: PathBuf,
        force: bool,
        notes: Py<PyAny>,
    ) -> PyResult<(String, Vec<PathBuf>)> {
        guarded(|| {
            let input = match (words, text) {
                (Some(_), Some(_)) => {
                    return Err(PyValueError::new_err("pass words or text, not both"));
                }
                (Some(words), None) => neoprobe::trace::TraceInput::Words(words),
                (None, Some(text)) => neoprobe::trace::TraceInput::Text(text),
                (None, None) => neoprobe::trace::TraceInput::ChallengeWords,
            };
            let args = neoprobe::trace::TraceArgs {
                model: self.source(),
                fetch: FetchOptions::default(),
                input,
                hook,
                variant: Some(self.session().engine.kernels.variant),
                out_dir,
                force,
            };
            let notes = PyNotes::new(notes);
            let outcome = detached(py, &notes, || neoprobe::trace::trace(&args, &notes))?;
            Ok((serde_json::to_string(&outcome.report).map_err(|e| to_pyerr(&e.into()))?, outcome.files))
        })
    }

    /// `neoprobe sweep vocab` into `out_dir`: its summary text and the files.
    #[pyo3(signature = (hook, prefix_space, top_k, out_dir, force, notes))]
    #[allow(clippy::too_many_arguments)]
    fn sweep_vocab(
        &self,
        py: Python<'_>,
        hook: String,
        prefix_space: bool,
        top_k: usize,
        out_dir: PathBuf,
        force: bool,
        notes: Py<PyAny>,
    ) -> PyResult<(String, Vec<PathBuf>)> {
        guarded(|| {
            let source = self.source();
            let session = self.session();
            let args = neoprobe::sweep::vocab::VocabArgs {
                common: neoprobe::sweep::SweepCommon {
                    model: source,
                    fetch: FetchOptions::default(),
                    out_dir,
                    force,
                    batch_tokens: session.batch_tokens,
                    variant: Some(session.engine.kernels.variant),
                },
                hook,
                prefix_space,
                top_k,
            };
            drop(session);
            let notes = PyNotes::new(notes);
            let outcome = detached(py, &notes, || neoprobe::sweep::vocab::sweep_vocab(&args, &notes))?;
            Ok((outcome.summary, outcome.files))
        })
    }

    /// `neoprobe verify` (every variant the adapter runs, or `kernel_variants`): the `--json`
    /// report. A failing check is in the report, not an error. `inject_fault` ("linear",
    /// "attention", "layernorm") compiles a deliberate error into the kernels, as the CLI's
    /// hidden `--inject-fault` does, to see the checks fail.
    #[pyo3(signature = (kernel_variants, inject_fault, notes))]
    fn verify(
        &self,
        py: Python<'_>,
        kernel_variants: Vec<String>,
        inject_fault: Option<&str>,
        notes: Py<PyAny>,
    ) -> PyResult<String> {
        guarded(|| {
            // A relative error far above rounding and far below what any real bug does (the CLI's).
            let amount = 1.0 / 1024.0;
            let faults = match inject_fault {
                None => neoprobe::kernels::Faults::default(),
                Some("linear") => neoprobe::kernels::Faults { linear: amount, ..Default::default() },
                Some("attention") => neoprobe::kernels::Faults { attention: amount, ..Default::default() },
                Some("layernorm") => neoprobe::kernels::Faults { layernorm: amount, ..Default::default() },
                Some(other) => {
                    return Err(PyValueError::new_err(format!(
                        "inject_fault {other:?} is not one of linear, attention, layernorm"
                    )))
                }
            };
            let variants = kernel_variants
                .iter()
                .map(|v| parse_variant(Some(v)).map(|v| v.expect("a name was given")))
                .collect::<PyResult<Vec<_>>>()?;
            let args = neoprobe::verify::VerifyArgs {
                model: self.source(),
                fetch: FetchOptions::default(),
                variants,
                faults,
            };
            let notes = PyNotes::new(notes);
            let report = detached(py, &notes, || neoprobe::verify::verify(&args, &notes))?;
            serde_json::to_string(&report).map_err(|e| to_pyerr(&e.into()))
        })
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeModel>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add("DEFAULT_MODEL", neoprobe::hub::DEFAULT_MODEL)?;
    module.add("DEFAULT_REVISION", neoprobe::hub::DEFAULT_REVISION)?;
    module.add("DEFAULT_HOOK", neoprobe::model::DEFAULT_HOOK)?;
    module.add("DEFAULT_LAYER", neoprobe::model::DEFAULT_LAYER)?;
    module.add("DEFAULT_PERMUTATIONS", neoprobe::challenge::permutation::DEFAULT_PERMUTATIONS)?;
    module.add("DEFAULT_SEED", neoprobe::challenge::permutation::DEFAULT_SEED)?;
    module.add("DEFAULT_TOP_K", neoprobe::sweep::DEFAULT_TOP_K)?;
    module.add_function(wrap_pyfunction!(raise_panic_for_tests, module)?)?;
    Ok(())
}

/// Panics inside the library's guard, for the test that a panic reaches Python as
/// `RuntimeError("internal error: …")` and nothing else.
#[pyfunction]
fn raise_panic_for_tests(py: Python<'_>, notes: Py<PyAny>) -> PyResult<()> {
    guarded(|| {
        let notes = PyNotes::new(notes);
        detached(py, &notes, || -> anyhow::Result<()> { panic!("a deliberate panic") })
    })
}
