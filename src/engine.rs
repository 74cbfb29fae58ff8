//! A GPT-Neo model loaded onto a GPU, ready to run batches: what `extract`, `challenge` and
//! `bench` share.

use crate::gpu::{Gpu, Trace};
use crate::hub::{self, FetchOptions};
use crate::kernels::{Faults, Kernels, Variant};
use crate::model::{
    kernel_shapes, Activations, Batch, ForwardTimes, GptNeoConfig, GptNeoWeights, GpuModel, Hook, HookPlan,
    ModelDir, Resume,
};
use crate::notes::Notes;
use crate::tokenize::Tokenizer;
use anyhow::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the time of getting a model ready went.
#[derive(Clone, Debug, Default)]
pub struct LoadTimes {
    /// Reading config.json and tokenizer.json, mapping and checking the safetensors weights.
    pub load: Duration,
    /// Copying the weights to the GPU (and into the layout the kernels read).
    pub upload: Duration,
    /// Opening the GPU and compiling the kernels (pipeline creation).
    pub pipelines: Duration,
}

pub struct Engine {
    pub gpu: Gpu,
    pub kernels: Kernels,
    pub model: GpuModel,
    pub times: LoadTimes,
}

impl Engine {
    /// Puts `weights` on a GPU (every block they hold), for the kernel `variant` (default: the
    /// fastest for the adapter).
    pub fn new(weights: &GptNeoWeights, variant: Option<Variant>, load: Duration) -> Result<Engine> {
        Engine::with_faults(weights, variant, load, Faults::default())
    }

    /// `new` with deliberate errors compiled into the kernels (`neoprobe verify --inject-fault`).
    pub fn with_faults(
        weights: &GptNeoWeights,
        variant: Option<Variant>,
        load: Duration,
        faults: Faults,
    ) -> Result<Engine> {
        let started = Instant::now();
        let gpu = Gpu::new()?;
        let variant = variant.unwrap_or_else(|| Variant::best_for(&gpu));
        let kernels = Kernels::with_faults(&gpu, variant, &kernel_shapes(&weights.config), faults)?;
        let pipelines = started.elapsed();
        let started = Instant::now();
        let model = GpuModel::upload(&gpu, &kernels, weights)?;
        let upload = started.elapsed();
        Ok(Engine { gpu, kernels, model, times: LoadTimes { load, upload, pipelines } })
    }

    pub fn forward(
        &self,
        batch: &Batch,
        plan: &HookPlan,
        timed: bool,
    ) -> Result<(Activations, ForwardTimes)> {
        self.model.forward(&self.gpu, &self.kernels, batch, plan, timed)
    }

    /// The forward from a block on, its input rows given (see [`Resume`]).
    pub fn forward_from(
        &self,
        batch: &Batch,
        plan: &HookPlan,
        resume: &Resume,
    ) -> Result<(Activations, ForwardTimes)> {
        self.model.forward_from(&self.gpu, &self.kernels, batch, plan, resume)
    }

    /// The forward with every dispatch described and timed (`neoprobe trace`).
    pub fn forward_traced(&self, batch: &Batch, plan: &HookPlan) -> Result<(Activations, Trace)> {
        self.model.forward_traced(&self.gpu, &self.kernels, batch, plan)
    }
}

/// A model folder's config, tokenizer and the weights `plan` needs, read and checked.
pub struct LoadedModel {
    pub config: GptNeoConfig,
    pub tokenizer: Tokenizer,
    pub weights: GptNeoWeights,
    pub load_time: Duration,
}

impl LoadedModel {
    /// Reads `dir`; `plan` is made from the config (hooks are checked against it).
    pub fn load(
        dir: &ModelDir,
        plan: impl FnOnce(&GptNeoConfig) -> Result<HookPlan>,
    ) -> Result<(LoadedModel, HookPlan)> {
        let started = Instant::now();
        let config = dir.config()?;
        let plan = plan(&config)?;
        let tokenizer = Tokenizer::load(&dir.tokenizer_path())?;
        let weights = dir.weights(&config, &plan)?;
        Ok((LoadedModel { config, tokenizer, weights, load_time: started.elapsed() }, plan))
    }

    /// `load` for a forward up to one hook, named as a user names it (checked against the config).
    pub fn load_for_hook(dir: &ModelDir, name: &str) -> Result<(LoadedModel, HookPlan, Hook)> {
        let (model, plan) = LoadedModel::load(dir, |config| HookPlan::new(&[Hook::parse(name, config)?]))?;
        let hook = plan.deepest();
        Ok((model, plan, hook))
    }
}

/// Which model to run.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A hub repo, fetched into the HF cache. `revision` `None`: the pinned commit for
    /// [`hub::DEFAULT_MODEL`], `main` for any other model.
    Hub { id: String, revision: Option<String> },
    /// A local folder with config.json, the safetensors weights (one file or sharded) and
    /// tokenizer.json; no network.
    Dir(PathBuf),
}

/// A model source made local: the folder to load, and how to name it.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    pub dir: PathBuf,
    /// The hub id or the folder, for people.
    pub label: String,
    /// The revision asked of the hub, and the commit it resolved to.
    pub revision: Option<String>,
    pub commit: Option<String>,
    /// Finding the files in the cache or fetching them.
    pub fetch_time: Duration,
}

impl ModelSource {
    /// The revision asked of the hub.
    pub fn revision(id: &str, revision: &Option<String>) -> String {
        match revision {
            Some(r) => r.clone(),
            None if id == hub::DEFAULT_MODEL => hub::DEFAULT_REVISION.to_string(),
            None => "main".to_string(),
        }
    }

    /// The local folder of this model: the folder itself, or the hub snapshot in the HF cache
    /// (fetched when missing). `notes` hear which revision is asked for, and the download.
    pub fn resolve(&self, fetch: &FetchOptions, notes: &dyn Notes) -> Result<ResolvedModel> {
        match self {
            ModelSource::Dir(path) => Ok(ResolvedModel {
                dir: path.clone(),
                label: path.display().to_string(),
                revision: None,
                commit: None,
                fetch_time: Duration::ZERO,
            }),
            ModelSource::Hub { id, revision } => {
                let revision = ModelSource::revision(id, revision);
                notes.step(&format!("model {id} at revision {revision}"));
                let started = Instant::now();
                let snapshot = hub::fetch_model(id, &revision, fetch, notes)?;
                let commit = snapshot.file_name().map(|c| c.to_string_lossy().into_owned());
                Ok(ResolvedModel {
                    dir: snapshot,
                    label: id.clone(),
                    revision: Some(revision),
                    commit,
                    fetch_time: started.elapsed(),
                })
            }
        }
    }
}
