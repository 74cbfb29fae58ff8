//! Fetching a model's files from the Hugging Face hub into the standard HF cache.
//!
//! [`fetch_model`] returns a folder holding `config.json`, `tokenizer.json` and the weights for
//! one revision of a model repo: the cache's snapshot folder. The cache is laid out exactly as
//! Python's `huggingface_hub` and the `hf-hub` crate lay it out, so files fetched by any of them
//! are found by the others:
//!
//! ```text
//! $HF_HOME/hub/                               (or $HF_HUB_CACHE)
//!   models--{org}--{name}/
//!     blobs/{etag}                  the contents, named by the hub's ETag: the sha256 of the
//!                                   content for LFS files, the git blob sha1 for the others
//!     blobs/{etag}.incomplete       a download in progress (resumed by the next try or run)
//!     refs/{revision}               the commit hash the revision resolved to (refs/refs/pr/{n}
//!                                   for the pull request revision refs/pr/{n})
//!     snapshots/{commit}/{file}     relative symlink to ../../blobs/{etag}
//!   .locks/models--{org}--{name}/{etag}.lock   the per-blob lock Python's huggingface_hub takes too
//! ```
//!
//! # Which files
//!
//! As transformers loads a checkpoint: `model.safetensors` when the revision has it; else
//! `model.safetensors.index.json` and every shard it names (each fetched like any other file);
//! else, when the revision has only PyTorch pickles ([`PICKLE_FILES`]), which neoprobe never
//! downloads or unpickles, the hub's safetensors conversion of its commit: the open pull request
//! titled [`CONVERSION_TITLE`] by [`CONVERSION_BOT`] whose head's parent is that commit, found
//! as transformers' `safetensors_conversion.previous_pr` finds it (the discussions API, then the
//! pull request's commits). Then every file comes from the pull request's head commit, whose
//! snapshot is returned, and a warning names the pull request (`refs/pr/{n}`) and its commit.
//! Unlike transformers, neoprobe never asks the hub to make a conversion. Without one the error
//! says how to convert the model locally. Which weights a revision has is learnt from `HEAD`
//! answers in that order, so a sharded repo costs one request more than a single file and a
//! cached snapshot none; a pickle-only revision is looked up on the hub on every run (offline,
//! pass the pull request's commit as the revision).
//!
//! # Behaviour
//!
//! * Cached: when the snapshot for the revision holds all its files (for a 40-hex commit the
//!   snapshot is `snapshots/{revision}`; for a branch or tag `refs/{revision}` names it), they are
//!   returned without any network request. A branch such as `main` is therefore not checked for
//!   updates once cached; neoprobe pins a commit by default.
//! * Cheap integrity check on every cache hit: each `*.safetensors` file must be exactly as long
//!   as its own header says, `*.json` files must parse as JSON. This catches truncated or appended blobs
//!   without reading them. A same-length bit flip is only caught by hashing the whole blob, a full
//!   read of the weights; set [`FetchOptions::verify_cached`] for that.
//!   A damaged cached file is downloaded again when online, and refused with a clear error when
//!   offline. It is never returned as valid.
//! * Offline (`HF_HUB_OFFLINE=1` or [`FetchOptions::offline`]): only the cache is read; nothing
//!   is written and no request is made.
//! * Downloads go to `blobs/{etag}.incomplete`. A transfer that stops short (no answer, a
//!   connection reset or closed early, a read timeout, HTTP 408, 429 or 5xx) is resumed within
//!   the same fetch with a `Range` request from the bytes on disk, after a growing wait, up to
//!   [`FetchOptions::retries`] times since bytes last arrived (see [`FetchOptions::retry_wait`]);
//!   other 4xx answers are final. A server that ignores the range restarts the file from zero.
//!   After the last try the error says how many bytes are kept, and a later run resumes from
//!   them. The finished file is checked against the size the hub announced and against the ETag
//!   (sha256 or git sha1) before it is renamed to `blobs/{etag}`. Snapshot symlinks and refs are
//!   created under temporary names and renamed into place, so the places the cache is read from
//!   only ever hold complete, verified files.
//! * Errors are single-line [`FetchError`]s (wrapped in `anyhow::Error`; downcast to read the
//!   [`FetchErrorKind`]).
//!
//! # Why not `hf_hub::api::sync` (0.5) for the transfer
//!
//! Its cache naming (`hf_hub::Repo::folder_name`) is used here, but its download path is not:
//! its ureq agent has no timeouts at all (a silent network hangs forever); it renames the
//! `.part` file into `blobs/` without checking size or hash, and on resume appends whatever the
//! server sends even when the server ignored `Range` and answered 200 with the whole file, which
//! leaves a corrupt blob in place; a `.part` file that is already complete fails forever
//! (it asks for `bytes=N-` and gets 416); it writes `refs/` in place (truncate then write); it
//! has no offline mode; and its errors do not tell "repo not found" from "file not found" from
//! "no network". So the HTTP side (the same protocol as Python's `huggingface_hub`: `HEAD` on
//! `/{repo}/resolve/{revision}/{file}` following only same-site redirects, reading
//! `X-Repo-Commit`, `X-Linked-Etag`/`ETag`, `X-Linked-Size`/`Content-Length` and `Location`,
//! then a `GET` of the file or its CDN location) is done here with `ureq` directly.

use crate::model::{ShardIndex, WEIGHTS_FILE, WEIGHTS_INDEX};
use crate::notes::{Bar, Notes, Unit};
use anyhow::Result;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The files neoprobe needs from a model repo whose weights are one file. A sharded repo has
/// [`WEIGHTS_INDEX`] and the shards it names instead of `model.safetensors`.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
/// The PyTorch pickles a repo may have instead of safetensors; neoprobe never downloads them.
pub const PICKLE_FILES: [&str; 2] = ["pytorch_model.bin", "pytorch_model.bin.index.json"];
/// The hub user that opens safetensors conversions of pickle-only repos as pull requests ...
pub const CONVERSION_BOT: &str = "SFconvertbot";
/// ... under this title (transformers' `safetensors_conversion` looks for the same).
pub const CONVERSION_TITLE: &str = "Adding `safetensors` variant of this model";
/// The model the `challenge` command uses unless told otherwise.
pub const DEFAULT_MODEL: &str = "EleutherAI/gpt-neo-125m";
/// The pinned commit of [`DEFAULT_MODEL`].
pub const DEFAULT_REVISION: &str = "21def0189f5705e2521767faed922f1f15e7d7db";
/// The hub used when neither [`FetchOptions::endpoint`] nor `HF_ENDPOINT` is set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

const MAX_REDIRECTS: usize = 10;
/// Pages of a repo's open pull requests read when looking for a conversion.
const MAX_DISCUSSION_PAGES: u64 = 20;
const COPY_BUFFER: usize = 1 << 20;

/// How [`fetch_model`] finds the cache and the hub. Fields left `None` are read from the
/// environment (in one place, when `fetch_model` starts), exactly like Python's `huggingface_hub`.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The Hugging Face home folder: the cache is `{hf_home}/hub`, the token file
    /// `{hf_home}/token`. `None`: `HF_HUB_CACHE` / `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`,
    /// else `~/.cache/huggingface`.
    pub hf_home: Option<PathBuf>,
    /// The hub's base URL. `None`: `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`].
    pub endpoint: Option<String>,
    /// Use only the cache, never the network. `None`: `HF_HUB_OFFLINE` (1/ON/YES/TRUE).
    pub offline: Option<bool>,
    /// Bearer token sent to the hub (never to the CDN it redirects to); `Some("")` sends none.
    /// `None`: `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`, default `{hf_home}/token`).
    pub token: Option<String>,
    /// Longest wait for the DNS lookup of a host (default 1 s).
    pub resolve_timeout: Duration,
    /// Longest wait to set up a connection, TCP and TLS (default 3 s).
    pub connect_timeout: Duration,
    /// Longest silence while waiting for an answer or for the next bytes of a body (default 20 s).
    pub read_timeout: Duration,
    /// How many times a download that stopped short (no answer, a connection reset or closed
    /// early, a read timeout, HTTP 408, 429 or 5xx) is tried again within the same fetch,
    /// resuming from the bytes on disk, before giving up. The count starts over whenever a try
    /// brings new bytes, as in Python's `huggingface_hub` (default 5).
    pub retries: u32,
    /// The wait before the first retry. Each further retry waits twice as long as the one
    /// before, at most 8 times this; a try that brings new bytes starts over from this
    /// (default 1 s, so 1, 2, 4, 8, 8 s: `huggingface_hub`'s backoff).
    pub retry_wait: Duration,
    /// On a cache hit, also hash every cached file and compare with its blob name (sha256 or git
    /// sha1). Costs a full read of the weights; off by default.
    pub verify_cached: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            hf_home: None,
            endpoint: None,
            offline: None,
            token: None,
            resolve_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(20),
            retries: 5,
            retry_wait: Duration::from_secs(1),
            verify_cached: false,
        }
    }
}

/// What went wrong, for callers that want to react differently (the message says it all for
/// the user).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// The model id or revision is malformed, or the cache location cannot be determined.
    InvalidInput,
    /// Offline and the files are not in the cache.
    NotCached,
    /// The hub (or its download server) could not be reached or did not answer in time.
    Unreachable,
    /// The hub does not know this repo id or this revision.
    NotFound,
    /// The repo is gated or the token is refused.
    AccessDenied,
    /// The repo exists but lacks one of the files.
    FileNotFound,
    /// A download stopped part way, on its last try too; running again resumes it.
    Interrupted,
    /// A cached or downloaded file does not match its size or hash.
    Corrupt,
    /// The server answered in a way the hub never does (missing headers, unexpected status).
    BadResponse,
    /// Reading or writing the cache failed.
    Io,
}

/// A single-line error from [`fetch_model`].
#[derive(Debug)]
pub struct FetchError {
    kind: FetchErrorKind,
    message: String,
}

impl FetchError {
    /// What kind of failure this is.
    pub fn kind(&self) -> FetchErrorKind {
        self.kind
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

fn fail(kind: FetchErrorKind, message: impl Into<String>) -> anyhow::Error {
    let message: String = message.into();
    // Server-provided text ends up in messages; keep them on one line.
    let message = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    anyhow::Error::new(FetchError { kind, message })
}

fn io_fail(what: &str, path: &Path, e: io::Error) -> anyhow::Error {
    fail(
        FetchErrorKind::Io,
        format!(
            "cannot {what} {}: {e} (set HF_HOME to a writable folder, or pass --model-dir DIR with local files)",
            path.display()
        ),
    )
}

/// Returns a local folder holding the model's files (the cache's snapshot dir for that revision,
/// or for the hub's safetensors conversion of it), downloading what is missing. See the module
/// documentation for the exact behaviour.
pub fn fetch_model(
    model_id: &str,
    revision: &str,
    opts: &FetchOptions,
    notes: &dyn Notes,
) -> Result<PathBuf> {
    validate_model_id(model_id)?;
    validate_revision(revision)?;
    let settings = Settings::resolve(opts)?;
    let cache = RepoCache::new(&settings.hub_dir, model_id, revision);

    // 1. The cache, without any request.
    let known_commit = cache.commit_for(revision);
    let states = match &known_commit {
        Some(commit) => cached_files(&cache, commit, opts.verify_cached),
        None => Vec::new(),
    };
    if let Some(commit) = &known_commit {
        if complete(&states) {
            return Ok(cache.snapshot(commit));
        }
    }

    if settings.offline {
        return Err(offline_error(model_id, revision, &settings, &cache, known_commit.as_deref(), &states));
    }

    // 2. The hub, for whatever is missing or damaged.
    let fetcher = Fetcher {
        client: Client::new(&settings, opts),
        cache: &cache,
        verify_cached: opts.verify_cached,
        announced: std::cell::Cell::new(false),
    };
    let ctx = Ctx { model_id, revision, endpoint: &settings.endpoint, notes };
    let commit = fetcher.complete_snapshot(&ctx, known_commit, &states, true)?;
    Ok(cache.snapshot(&commit))
}

/// Each file the snapshot of `commit` should hold, with its state: `config.json`, the weights
/// and `tokenizer.json`. The weights are `model.safetensors` when the snapshot has it (or has
/// no weights at all); else the index and, once the index reads, each shard it names.
fn cached_files(cache: &RepoCache, commit: &str, deep: bool) -> Vec<(String, CachedFile)> {
    let snapshot = cache.snapshot(commit);
    let check = |name: &str| (name.to_string(), check_cached(&snapshot.join(name), deep));
    let mut files = vec![check("config.json")];
    let single = check(WEIGHTS_FILE);
    let index = check(WEIGHTS_INDEX);
    match (&single.1, &index.1) {
        (CachedFile::Missing, CachedFile::Good) => match ShardIndex::read(&snapshot.join(WEIGHTS_INDEX)) {
            Ok(parsed) => {
                files.push(index);
                files.extend(parsed.shards.iter().map(|shard| check(shard)));
            }
            Err(e) => files.push((WEIGHTS_INDEX.to_string(), CachedFile::Damaged(format!("{e:#}")))),
        },
        (CachedFile::Missing, CachedFile::Damaged(_)) => files.push(index),
        _ => files.push(single),
    }
    files.push(check("tokenizer.json"));
    files
}

fn complete(states: &[(String, CachedFile)]) -> bool {
    !states.is_empty() && states.iter().all(|(_, s)| matches!(s, CachedFile::Good))
}

fn state_of(states: &[(String, CachedFile)], name: &str) -> CachedFile {
    states.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone()).unwrap_or(CachedFile::Missing)
}

fn offline_error(
    model_id: &str,
    revision: &str,
    settings: &Settings,
    cache: &RepoCache,
    commit: Option<&str>,
    states: &[(String, CachedFile)],
) -> anyhow::Error {
    let hint = "pass --model-dir DIR with local config.json, model.safetensors and tokenizer.json";
    if let Some(commit) = commit {
        for (file, state) in states {
            if let CachedFile::Damaged(reason) = state {
                let path = cache.snapshot(commit).join(file);
                return fail(
                    FetchErrorKind::Corrupt,
                    format!(
                        "cached {file} of model \"{model_id}\" at {} is damaged ({reason}) and offline mode is on (HF_HUB_OFFLINE): run once online to replace it, or {hint}",
                        path.display()
                    ),
                );
            }
        }
    }
    let missing: Vec<&str> =
        states.iter().filter(|(_, s)| matches!(s, CachedFile::Missing)).map(|(f, _)| f.as_str()).collect();
    let what = if commit.is_some() && missing.len() < states.len() {
        format!(" (missing: {})", missing.join(", "))
    } else {
        String::new()
    };
    fail(
        FetchErrorKind::NotCached,
        format!(
            "model \"{model_id}\" (revision {revision}) is not in the Hugging Face cache at {}{what} and offline mode is on (HF_HUB_OFFLINE): {hint}, or go online to download it",
            settings.hub_dir.display()
        ),
    )
}

/// What finding the hub's safetensors conversion of a commit gave.
enum Conversion {
    /// The open pull request `num` by [`CONVERSION_BOT`], whose head is `commit`.
    Found { num: u64, commit: String },
    /// None; the text says why when the hub's answers were not usable (else empty).
    Missing(String),
}

/// The online part of [`fetch_model`].
struct Fetcher<'a> {
    client: Client,
    cache: &'a RepoCache,
    verify_cached: bool,
    /// Whether the "downloading" step was told.
    announced: std::cell::Cell<bool>,
}

impl Fetcher<'_> {
    /// Completes the snapshot of `ctx.revision`, downloading each file `cached` does not hold as
    /// good, weights first: where they are decides the rest. Every request names `commit` once
    /// it is known (from the cache, or from the first answer), so all files come from one
    /// commit even if a branch moves meanwhile. Writes `refs/{revision}`. Returns the commit
    /// whose snapshot holds the files: the revision's own, or, with `convert`, the head of the
    /// hub's safetensors conversion of it when the revision has only `pytorch_model.bin`.
    fn complete_snapshot(
        &self,
        ctx: &Ctx,
        mut commit: Option<String>,
        cached: &[(String, CachedFile)],
        convert: bool,
    ) -> Result<String> {
        let listed = |name: &str| cached.iter().any(|(n, _)| n == name);
        let single = state_of(cached, WEIGHTS_FILE);
        if listed(WEIGHTS_FILE) && !matches!(single, CachedFile::Missing) {
            // The snapshot has the single file: only that can need fetching again.
            self.ensure(ctx, &mut commit, WEIGHTS_FILE, &single)?;
        } else if listed(WEIGHTS_INDEX) && matches!(state_of(cached, WEIGHTS_INDEX), CachedFile::Good) {
            // A readable index is cached: only shards can be missing.
            for (name, state) in cached.iter().filter(|(n, _)| n.ends_with(".safetensors")) {
                self.ensure(ctx, &mut commit, name, state)?;
            }
        } else if let Some(meta) = self.meta_if_present(ctx, &mut commit, WEIGHTS_FILE)? {
            self.download(ctx, &meta, WEIGHTS_FILE)?;
        } else if let Some(meta) = self.meta_if_present(ctx, &mut commit, WEIGHTS_INDEX)? {
            self.download(ctx, &meta, WEIGHTS_INDEX)?;
            let snapshot = self.cache.snapshot(&meta.commit);
            let index = ShardIndex::read(&snapshot.join(WEIGHTS_INDEX)).map_err(|e| {
                fail(
                    FetchErrorKind::BadResponse,
                    format!(
                        "the {WEIGHTS_INDEX} of model \"{}\" (revision {}) from the hub at {} is not usable: {e:#}",
                        ctx.model_id, ctx.revision, ctx.endpoint
                    ),
                )
            })?;
            for shard in &index.shards {
                let state = check_cached(&snapshot.join(shard), self.verify_cached);
                self.ensure(ctx, &mut commit, shard, &state)?;
            }
        } else if convert {
            return self.pickles_only(ctx, commit);
        } else {
            return Err(fail(
                FetchErrorKind::FileNotFound,
                format!(
                    "model \"{}\" (revision {}) has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX} on the hub at {}: choose a revision with safetensors weights, or pass --model-dir DIR with local files",
                    ctx.model_id, ctx.revision, ctx.endpoint
                ),
            ));
        }
        for name in ["config.json", "tokenizer.json"] {
            self.ensure(ctx, &mut commit, name, &state_of(cached, name))?;
        }
        let commit = commit.expect("the cache or a request named the commit");
        self.cache.write_ref(ctx.revision, &commit)?;
        Ok(commit)
    }

    /// The revision has no safetensors weights: if it has PyTorch pickles, use the hub's
    /// safetensors conversion of its commit (never the pickles), as transformers does.
    fn pickles_only(&self, ctx: &Ctx, mut commit: Option<String>) -> Result<String> {
        let (model_id, revision, endpoint) = (ctx.model_id, ctx.revision, ctx.endpoint);
        let mut pickle = None;
        for name in PICKLE_FILES {
            if self.meta_if_present(ctx, &mut commit, name)?.is_some() {
                pickle = Some(name);
                break;
            }
        }
        let Some(pickle) = pickle else {
            return Err(fail(
                FetchErrorKind::FileNotFound,
                format!(
                    "model \"{model_id}\" (revision {revision}) has no weights on the hub at {endpoint}: none of {WEIGHTS_FILE}, {WEIGHTS_INDEX}, {}; check the model id and revision",
                    PICKLE_FILES.join(", ")
                ),
            ));
        };
        let base = commit.expect("the answer that found the pickle named the commit");
        match self.find_conversion(ctx, &base)? {
            Conversion::Found { num, commit: head } => {
                self.cache.write_ref(revision, &base)?;
                let pr_ref = format!("refs/pr/{num}");
                ctx.notes.warn(&format!(
                    "model \"{model_id}\" (revision {revision}) has only {pickle}, which neoprobe does not unpickle: using the hub's safetensors conversion of commit {base} instead, pull request #{num} by {CONVERSION_BOT} (revision {pr_ref}, commit {head}), which the model's authors have not merged; pass --revision {head} to pin it"
                ));
                let pr_ctx = Ctx { model_id, revision: &pr_ref, endpoint, notes: ctx.notes };
                let cached = cached_files(self.cache, &head, self.verify_cached);
                if complete(&cached) {
                    self.cache.write_ref(&pr_ref, &head)?;
                    return Ok(head);
                }
                self.complete_snapshot(&pr_ctx, Some(head), &cached, false)
            }
            Conversion::Missing(why) => Err(fail(
                FetchErrorKind::FileNotFound,
                format!(
                    "model \"{model_id}\" (revision {revision}) has only {pickle} on the hub at {endpoint}, and no safetensors conversion of commit {base} (an open pull request by {CONVERSION_BOT}){why}; neoprobe does not unpickle checkpoints: convert it with transformers (from_pretrained, then save_pretrained(DIR, safe_serialization=True) for the model and its tokenizer) and pass --model-dir DIR, or choose a revision that has {WEIGHTS_FILE}"
                ),
            )),
        }
    }

    /// The hub's safetensors conversion of `base`, as transformers finds it
    /// (`safetensors_conversion.previous_pr`): an open pull request titled
    /// [`CONVERSION_TITLE`], by [`CONVERSION_BOT`], whose head's parent is `base`; the newest
    /// such. Listed with `GET /api/models/{repo}/discussions` page by page, as
    /// `huggingface_hub.get_repo_discussions` does; a candidate's commits with
    /// `GET /api/models/{repo}/commits/refs%2Fpr%2F{num}` (newest first).
    fn find_conversion(&self, ctx: &Ctx, base: &str) -> Result<Conversion> {
        let api = format!("{}/api/models/{}", ctx.endpoint, ctx.model_id);
        let mut candidates = Vec::new();
        for page in 0..MAX_DISCUSSION_PAGES {
            let url = format!("{api}/discussions?p={page}&type=pull_request&status=open");
            let json = match self.api_json(&url)? {
                Ok(json) => json,
                Err(why) => {
                    return Ok(Conversion::Missing(format!("; its pull requests could not be listed: {why}")))
                }
            };
            let Some(discussions) = json.get("discussions").and_then(|d| d.as_array()) else {
                return Ok(Conversion::Missing(
                    "; its pull requests could not be listed: the answer has no discussions".to_string(),
                ));
            };
            for d in discussions {
                let is = |key: &str, value: &str| d.get(key).and_then(|v| v.as_str()) == Some(value);
                let by_bot = d
                    .get("author")
                    .and_then(|a| a.get("name"))
                    .and_then(|n| n.as_str())
                    .is_some_and(|n| n.eq_ignore_ascii_case(CONVERSION_BOT));
                let is_pr = d.get("isPullRequest").and_then(|v| v.as_bool()) == Some(true);
                if is_pr && by_bot && is("status", "open") && is("title", CONVERSION_TITLE) {
                    candidates.extend(d.get("num").and_then(|n| n.as_u64()));
                }
            }
            let seen = json.get("start").and_then(|s| s.as_u64()).unwrap_or(0) + discussions.len() as u64;
            let count = json.get("count").and_then(|c| c.as_u64()).unwrap_or(0);
            if discussions.is_empty() || seen >= count {
                break;
            }
        }
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        candidates.dedup();
        for num in candidates {
            let url = format!("{api}/commits/{}", percent_encode(&format!("refs/pr/{num}"), false));
            let Ok(json) = self.api_json(&url)? else { continue };
            let ids: Vec<&str> = json
                .as_array()
                .map(|commits| commits.iter().filter_map(|c| c.get("id")?.as_str()).collect())
                .unwrap_or_default();
            if ids.len() >= 2 && ids[1] == base && is_commit_hash(ids[0]) {
                return Ok(Conversion::Found { num, commit: ids[0].to_string() });
            }
        }
        Ok(Conversion::Missing(String::new()))
    }

    /// `GET url` of the hub's API: the JSON, or (inside) why there is none. No answer at all is
    /// an error.
    fn api_json(&self, url: &str) -> Result<std::result::Result<serde_json::Value, String>> {
        let (mut response, _) = self
            .client
            .send(false, url, None, Follow::Relative)
            .map_err(|e| self.client.unreachable(url, "its pull requests", &self.client.net_cause(&e)))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Ok(Err(format!("HTTP {status}")));
        }
        let text = match response.body_mut().read_to_string() {
            Ok(text) => text,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(serde_json::from_str(&text).map_err(|e| format!("the answer is not JSON ({e})")))
    }

    /// Makes sure `name` is in the snapshot: nothing to do when `state` is good, else ask the
    /// hub about it and download it.
    fn ensure(&self, ctx: &Ctx, commit: &mut Option<String>, name: &str, state: &CachedFile) -> Result<()> {
        if matches!(state, CachedFile::Good) {
            return Ok(());
        }
        if let (CachedFile::Damaged(reason), Some(c)) = (state, &*commit) {
            ctx.notes.step(&format!(
                "cached {} is damaged ({reason}); downloading it again",
                self.cache.snapshot(c).join(name).display()
            ));
        }
        let meta = self.meta(ctx, commit, name)?;
        self.download(ctx, &meta, name)
    }

    /// What the hub says about `name`, at `commit` once known (which the first answer sets).
    fn meta(&self, ctx: &Ctx, commit: &mut Option<String>, name: &str) -> Result<FileMeta> {
        let url_revision = commit.clone().unwrap_or_else(|| ctx.revision.to_string());
        let meta = self.client.metadata(ctx, &url_revision, name)?;
        match commit {
            None => *commit = Some(meta.commit.clone()),
            Some(c) if *c != meta.commit => {
                return Err(fail(
                    FetchErrorKind::BadResponse,
                    format!(
                        "the hub at {} answered commit {} for {name} of \"{}\" at revision {url_revision}, expected {c}",
                        ctx.endpoint, meta.commit, ctx.model_id
                    ),
                ))
            }
            Some(_) => {}
        }
        Ok(meta)
    }

    /// [`Fetcher::meta`], or `None` when the revision has no such file.
    fn meta_if_present(
        &self,
        ctx: &Ctx,
        commit: &mut Option<String>,
        name: &str,
    ) -> Result<Option<FileMeta>> {
        match self.meta(ctx, commit, name) {
            Ok(meta) => Ok(Some(meta)),
            Err(e)
                if e.downcast_ref::<FetchError>().is_some_and(|f| f.kind == FetchErrorKind::FileNotFound) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Puts the file `meta` describes in place, telling the caller once that downloads begin.
    fn download(&self, ctx: &Ctx, meta: &FileMeta, name: &str) -> Result<()> {
        if !self.announced.replace(true) {
            ctx.notes.step(&format!(
                "downloading {} (revision {}) from {} into {}",
                ctx.model_id,
                ctx.revision,
                ctx.endpoint,
                self.cache.dir.display()
            ));
        }
        fetch_file(&self.client, ctx, self.cache, meta, name)
    }
}

// ---------------------------------------------------------------------------------------------
// Settings: the one place the environment is read.

struct Settings {
    hub_dir: PathBuf,
    endpoint: String,
    offline: bool,
    token: Option<String>,
}

impl Settings {
    fn resolve(opts: &FetchOptions) -> Result<Settings> {
        let env = |key: &str| std::env::var(key).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let home = || env("HOME").or_else(|| env("USERPROFILE")).map(PathBuf::from);
        let expand = |p: String| match p.strip_prefix("~/") {
            Some(rest) => home().map(|h| h.join(rest)).unwrap_or_else(|| PathBuf::from(&p)),
            None => PathBuf::from(p),
        };
        let (hf_home, hub_dir) = match &opts.hf_home {
            Some(h) => (h.clone(), h.join("hub")),
            None => {
                let hf_home = match env("HF_HOME") {
                    Some(h) => expand(h),
                    None => env("XDG_CACHE_HOME")
                        .map(expand)
                        .or_else(|| home().map(|h| h.join(".cache")))
                        .ok_or_else(|| {
                            fail(
                                FetchErrorKind::InvalidInput,
                                "cannot locate the Hugging Face cache: no home folder; set HF_HOME",
                            )
                        })?
                        .join("huggingface"),
                };
                let hub_dir = env("HF_HUB_CACHE").map(expand).unwrap_or_else(|| hf_home.join("hub"));
                (hf_home, hub_dir)
            }
        };
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| env("HF_ENDPOINT"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(fail(
                FetchErrorKind::InvalidInput,
                format!("the hub endpoint \"{endpoint}\" is not an http(s) URL (check HF_ENDPOINT)"),
            ));
        }
        let offline = opts.offline.unwrap_or_else(|| {
            env("HF_HUB_OFFLINE")
                .is_some_and(|v| matches!(v.to_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
        });
        let token = if offline {
            None
        } else {
            match &opts.token {
                Some(t) => Some(t.trim().to_string()).filter(|t| !t.is_empty()),
                None => env("HF_TOKEN").or_else(|| {
                    let path = env("HF_TOKEN_PATH").map(expand).unwrap_or_else(|| hf_home.join("token"));
                    fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
                }),
            }
        };
        Ok(Settings { hub_dir, endpoint, offline, token })
    }
}

fn validate_model_id(model_id: &str) -> Result<()> {
    let parts: Vec<&str> = model_id.split('/').collect();
    let part_ok = |p: &&str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
    };
    let ok = model_id.len() <= 96
        && (1..=2).contains(&parts.len())
        && parts.iter().all(part_ok)
        && !model_id.contains("--")
        && !model_id.contains("..");
    if ok {
        Ok(())
    } else {
        Err(fail(
            FetchErrorKind::InvalidInput,
            format!(
                "\"{model_id}\" is not a valid hub model id (expected ORG/NAME, such as {DEFAULT_MODEL})"
            ),
        ))
    }
}

fn validate_revision(revision: &str) -> Result<()> {
    let ok = !revision.is_empty()
        && revision.len() <= 255
        && !revision.chars().any(|c| c.is_control() || c == '\\')
        && revision.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        Ok(())
    } else {
        Err(fail(
            FetchErrorKind::InvalidInput,
            format!("\"{revision}\" is not a valid revision (a commit hash, branch or tag)"),
        ))
    }
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// ETags become file names: accept only what the hub sends (hex digests), never a path.
fn is_safe_etag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

// ---------------------------------------------------------------------------------------------
// The cache layout.

struct RepoCache {
    hub_dir: PathBuf,
    folder: String,
    dir: PathBuf,
}

impl RepoCache {
    fn new(hub_dir: &Path, model_id: &str, revision: &str) -> Self {
        // The same naming hf-hub (and Python) use: models--{org}--{name}.
        let folder =
            hf_hub::Repo::with_revision(model_id.to_string(), hf_hub::RepoType::Model, revision.to_string())
                .folder_name();
        Self { hub_dir: hub_dir.to_path_buf(), dir: hub_dir.join(&folder), folder }
    }

    fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    fn incomplete(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.incomplete"))
    }

    fn lock_path(&self, etag: &str) -> PathBuf {
        self.hub_dir.join(".locks").join(&self.folder).join(format!("{etag}.lock"))
    }

    fn ref_path(&self, revision: &str) -> PathBuf {
        revision.split('/').fold(self.dir.join("refs"), |p, part| p.join(part))
    }

    /// The commit the cache associates with `revision`: the revision itself when it is a commit
    /// hash (Python does not write refs for those), else the content of `refs/{revision}`.
    fn commit_for(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let text = fs::read_to_string(self.ref_path(revision)).ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_string())
    }

    /// Points `refs/{revision}` at `commit` (written under a temporary name, then renamed).
    /// Python writes refs only for branches and tags; hf-hub also for commit hashes, and its
    /// cache lookup needs them, so they are written for both.
    fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        let path = self.ref_path(revision);
        if fs::read_to_string(&path).is_ok_and(|t| t.trim() == commit) {
            return Ok(());
        }
        let parent = path.parent().expect("refs path has a parent");
        fs::create_dir_all(parent).map_err(|e| io_fail("create", parent, e))?;
        let tmp = self.temp_name("ref");
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(commit.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_fail("write", &path, e)
        })
    }

    /// Makes `snapshots/{commit}/{file}` a relative symlink to `blobs/{etag}` (Python's layout),
    /// created under a temporary name and renamed over whatever was there.
    fn link(&self, commit: &str, file: &str, etag: &str) -> Result<()> {
        let pointer = self.snapshot(commit).join(file);
        let parent = pointer.parent().expect("snapshot path has a parent");
        fs::create_dir_all(parent).map_err(|e| io_fail("create", parent, e))?;
        let mut target = PathBuf::new();
        for _ in 0..Path::new(file).components().count() + 1 {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        if fs::read_link(&pointer).is_ok_and(|t| t == target) {
            return Ok(());
        }
        // The temporary link lives in the repo folder, not in the snapshot, so that a crash
        // can never leave a stray entry where the cache is read.
        let tmp = self.temp_name("link");
        let make = || -> io::Result<()> {
            make_link(&target, &self.blob(etag), &tmp)?;
            fs::rename(&tmp, &pointer)
        };
        make().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_fail("write", &pointer, e)
        })
    }

    fn temp_name(&self, what: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".neoprobe-{what}-{}-{n}.tmp", std::process::id()))
    }
}

#[cfg(unix)]
fn make_link(target: &Path, _blob: &Path, at: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}

#[cfg(not(unix))]
fn make_link(target: &Path, blob: &Path, at: &Path) -> io::Result<()> {
    // Without symlink rights (Windows without developer mode) Python copies the blob; so do we.
    #[cfg(windows)]
    if std::os::windows::fs::symlink_file(target, at).is_ok() {
        return Ok(());
    }
    let _ = target;
    fs::copy(blob, at).map(|_| ())
}

/// An exclusive lock on one blob, at the path Python's `huggingface_hub` locks too, so two
/// processes never write the same `.incomplete` file. Released when dropped.
struct BlobLock {
    _file: File,
}

fn lock_blob(path: &Path, notes: &dyn Notes) -> Result<BlobLock> {
    let parent = path.parent().expect("lock path has a parent");
    fs::create_dir_all(parent).map_err(|e| io_fail("create", parent, e))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_fail("create", path, e))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                notes.step(&format!(
                    "another process is downloading this file; waiting for it ({})",
                    path.display()
                ));
                loop {
                    // SAFETY: as above.
                    if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                        break;
                    }
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(io_fail("lock", path, err));
                    }
                }
            }
            // Any other failure (a file system without flock): go on unlocked, as the
            // verification before the rename still guards the blob.
        }
    }
    #[cfg(not(unix))]
    let _ = notes;
    Ok(BlobLock { _file: file })
}

// ---------------------------------------------------------------------------------------------
// Checking files.

#[derive(Clone, Debug)]
enum CachedFile {
    Good,
    Missing,
    Damaged(String),
}

/// Checks a snapshot entry: it resolves to a regular file whose format is self-consistent, and,
/// when `deep`, whose content hashes to its blob name.
fn check_cached(path: &Path, deep: bool) -> CachedFile {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return if fs::symlink_metadata(path).is_ok() {
                CachedFile::Damaged("it links to a missing blob".into())
            } else {
                CachedFile::Missing
            };
        }
        Err(e) => return CachedFile::Damaged(e.to_string()),
    };
    if !meta.is_file() {
        return CachedFile::Damaged("not a regular file".into());
    }
    if let Err(reason) = check_format(path, meta.len()) {
        return CachedFile::Damaged(reason);
    }
    if deep {
        if let Some(etag) =
            fs::read_link(path).ok().and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        {
            match verify_file(path, &etag, None) {
                Ok(Verdict::Good) => {}
                Ok(Verdict::Missing) => return CachedFile::Missing,
                Ok(Verdict::Bad(reason)) => return CachedFile::Damaged(reason),
                Err(e) => return CachedFile::Damaged(e.to_string()),
            }
        }
    }
    CachedFile::Good
}

/// Cheap structural checks that catch truncated or extended files without hashing them.
fn check_format(path: &Path, len: u64) -> std::result::Result<(), String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".safetensors") {
        check_safetensors(path, len)
    } else if name.ends_with(".json") {
        let file = File::open(path).map_err(|e| e.to_string())?;
        serde_json::from_reader::<_, serde::de::IgnoredAny>(BufReader::new(file))
            .map(|_| ())
            .map_err(|e| format!("not valid JSON: {e}"))
    } else {
        Ok(())
    }
}

/// A safetensors file is an 8-byte little-endian header length, a JSON header giving each
/// tensor's `data_offsets` into the data section, and the data section: the file must end
/// exactly where the last tensor does.
fn check_safetensors(path: &Path, len: u64) -> std::result::Result<(), String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    if len < 8 {
        return Err(format!("{len} bytes, shorter than a safetensors header"));
    }
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|e| e.to_string())?;
    let n = u64::from_le_bytes(n);
    if n > len - 8 || n > 100 << 20 {
        return Err(format!("header length {n} does not fit in the file's {len} bytes"));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("unreadable safetensors header: {e}"))?;
    let mut end = 0u64;
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let tensor_end = info
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(|e| e.as_u64())
            .ok_or_else(|| format!("tensor {name} has no data_offsets in the header"))?;
        end = end.max(tensor_end);
    }
    let expected = 8 + n + end;
    if expected != len {
        return Err(format!("{len} bytes, but its header describes {expected} bytes"));
    }
    Ok(())
}

enum Verdict {
    Good,
    Missing,
    Bad(String),
}

/// Checks a file against the size the hub announced and against its ETag when the ETag is a
/// content hash: 64 hex digits are the sha256 of an LFS file, 40 hex digits the git blob sha1 of
/// a regular one. Other ETags are only size-checked.
fn verify_file(path: &Path, etag: &str, size: Option<u64>) -> io::Result<Verdict> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Verdict::Missing),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if let Some(size) = size {
        if len != size {
            return Ok(Verdict::Bad(format!("{len} bytes instead of {size}")));
        }
    }
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (mut ctx, name) = if hex(etag, 64) {
        (ring::digest::Context::new(&ring::digest::SHA256), "sha256")
    } else if hex(etag, 40) {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(format!("blob {len}\0").as_bytes());
        (ctx, "git sha1")
    } else {
        return Ok(Verdict::Good);
    };
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut read = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        read += n as u64;
        ctx.update(&buf[..n]);
    }
    if read != len {
        return Ok(Verdict::Bad("the file changed while it was being checked".into()));
    }
    let digest: String = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if digest.eq_ignore_ascii_case(etag) {
        Ok(Verdict::Good)
    } else {
        Ok(Verdict::Bad(format!("{name} is {digest}, the hub says {etag}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Downloading one file.

struct Ctx<'a> {
    model_id: &'a str,
    revision: &'a str,
    endpoint: &'a str,
    notes: &'a dyn Notes,
}

/// What the hub says about one file.
struct FileMeta {
    commit: String,
    etag: String,
    size: Option<u64>,
    /// The CDN location for LFS files, else the resolve URL.
    download_url: String,
}

/// Puts one file in place: reuse the blob if it is there and verifies, else download it; then
/// link it from the snapshot.
fn fetch_file(client: &Client, ctx: &Ctx, cache: &RepoCache, meta: &FileMeta, file: &str) -> Result<()> {
    let blob = cache.blob(&meta.etag);
    let blobs = blob.parent().expect("blob path has a parent");
    fs::create_dir_all(blobs).map_err(|e| io_fail("create", blobs, e))?;
    let _lock = lock_blob(&cache.lock_path(&meta.etag), ctx.notes)?;
    match verify_file(&blob, &meta.etag, meta.size) {
        Ok(Verdict::Good) => {}
        Ok(Verdict::Missing) => download(client, ctx, cache, meta, file)?,
        Ok(Verdict::Bad(reason)) => {
            ctx.notes
                .step(&format!("cached blob {} is damaged ({reason}); downloading it again", blob.display()));
            download(client, ctx, cache, meta, file)?
        }
        Err(e) => return Err(io_fail("read", &blob, e)),
    }
    cache.link(&meta.commit, file, &meta.etag)
}

/// Downloads into `blobs/{etag}.incomplete` (resuming it if present), verifies it, and renames
/// it to `blobs/{etag}` (replacing a damaged blob, if any).
fn download(client: &Client, ctx: &Ctx, cache: &RepoCache, meta: &FileMeta, file: &str) -> Result<()> {
    let part = cache.incomplete(&meta.etag);
    let blob = cache.blob(&meta.etag);
    let mut from_scratch = false;
    loop {
        let got = download_to(client, ctx, meta, file, &part)?;
        match verify_file(&part, &meta.etag, got.size).map_err(|e| io_fail("read", &part, e))? {
            Verdict::Good => {
                let finish = || -> io::Result<()> {
                    OpenOptions::new().write(true).open(&part)?.sync_all()?;
                    fs::rename(&part, &blob)
                };
                return finish().map_err(|e| io_fail("write", &blob, e));
            }
            Verdict::Missing => {
                return Err(io_fail(
                    "read",
                    &part,
                    io::Error::new(io::ErrorKind::NotFound, "vanished after download"),
                ))
            }
            Verdict::Bad(reason) => {
                let _ = fs::remove_file(&part);
                // Bytes left by an earlier run may have been bad (damaged on disk, or written
                // by another program): try once more from scratch before blaming the server.
                // Bytes this download wrote itself came from the server, so a second try
                // would only repeat it.
                if got.inherited && !from_scratch {
                    from_scratch = true;
                    continue;
                }
                return Err(fail(
                    FetchErrorKind::Corrupt,
                    format!(
                        "the downloaded {file} of \"{}\" does not match what the hub announced ({reason}); it was discarded, run again to retry",
                        ctx.model_id
                    ),
                ));
            }
        }
    }
}

/// What [`download_to`] left in the `.incomplete` file.
struct Downloaded {
    /// Some of its bytes predate this download: an earlier run's partial file was resumed.
    inherited: bool,
    /// The file's full size as far as it is known.
    size: Option<u64>,
}

/// The `.incomplete` file while a download fills it.
struct Partial {
    /// Bytes on disk.
    have: u64,
    /// How many of them predate this download.
    inherited: u64,
    /// How many the current try has written.
    got: u64,
    /// The file's full size as far as it is known.
    size: Option<u64>,
}

/// Why one try of a download stopped short.
enum TryError {
    /// The next try may do better; it resumes from the bytes on disk.
    Transient(Transient),
    /// Trying again cannot help: a 4xx answer, a wrong answer, a disk error.
    Fatal(anyhow::Error),
}

enum Transient {
    /// No HTTP answer: no connection, or no answer in time.
    NoAnswer { url: String, cause: String },
    /// A status a server gives when it is busy or failing for now: 408, 429, 5xx.
    Status { url: String, status: u16 },
    /// The body stopped before its end: the connection was reset or closed, or went silent.
    Cut(String),
}

impl Transient {
    fn cause(&self) -> String {
        match self {
            Transient::NoAnswer { cause, .. } | Transient::Cut(cause) => cause.clone(),
            Transient::Status { url, status } => format!("{} answered HTTP {status}", origin(url)),
        }
    }
}

/// Fills the `.incomplete` file, resuming it with a `Range` request from the bytes on disk.
///
/// A try that fails in a way the next one may not (see [`Transient`]) is followed by another,
/// from the bytes then on disk, after a wait, as Python's `huggingface_hub` does: at most
/// [`FetchOptions::retries`] retries since bytes last arrived, the first after
/// [`FetchOptions::retry_wait`], each later one after twice the previous wait (at most 8 times
/// the first); a try that brings new bytes starts both the count and the wait over. Any other
/// failure ends the download at once.
fn download_to(client: &Client, ctx: &Ctx, meta: &FileMeta, file: &str, part: &Path) -> Result<Downloaded> {
    let mut out =
        OpenOptions::new().create(true).append(true).open(part).map_err(|e| io_fail("create", part, e))?;
    let have = out.metadata().map_err(|e| io_fail("read", part, e))?.len();
    let mut state = Partial { have, inherited: have, got: 0, size: meta.size };
    if let Some(size) = meta.size {
        if state.have > size {
            restart(&out, part, &mut state)?;
        }
        if state.have == size {
            return Ok(Downloaded { inherited: state.have > 0, size: Some(size) });
        }
    }

    let bar = ctx.notes.bar(file, meta.size, state.have, Unit::Bytes);
    let mut retry = Retry::new(client.retries, client.retry_wait);
    loop {
        let failure = match one_try(client, ctx, meta, file, part, &mut out, &mut state, &*bar) {
            Ok(()) => {
                bar.finish();
                return Ok(Downloaded { inherited: state.inherited > 0, size: state.size });
            }
            Err(TryError::Fatal(e)) => {
                return Err(e);
            }
            Err(TryError::Transient(t)) => t,
        };
        let Some(wait) = retry.failed(state.got > 0) else {
            return Err(gave_up(client, ctx, file, part, &state, &retry, &failure));
        };
        ctx.notes.step(&format!(
            "the download of {file} stopped at {} bytes ({}); resuming in {:.1} s",
            state.have,
            failure.cause(),
            wait.as_secs_f64()
        ));
        std::thread::sleep(wait);
    }
}

/// When a failed try of a download is followed by another: see [`FetchOptions::retries`] and
/// [`FetchOptions::retry_wait`].
struct Retry {
    retries: u32,
    first_wait: Duration,
    /// Retries left before giving up.
    left: u32,
    /// The wait before the next retry.
    wait: Duration,
    /// Failed tries so far.
    tries: u32,
    /// How many of the last failed tries brought no new bytes.
    empty_in_a_row: u32,
}

impl Retry {
    fn new(retries: u32, first_wait: Duration) -> Self {
        Self { retries, first_wait, left: retries, wait: first_wait, tries: 0, empty_in_a_row: 0 }
    }

    /// Records a failed try, and whether it brought new bytes. Returns how long to wait before
    /// the next try, or `None` when the retries are spent.
    fn failed(&mut self, brought_bytes: bool) -> Option<Duration> {
        self.tries += 1;
        if brought_bytes {
            self.left = self.retries;
            self.wait = self.first_wait;
            self.empty_in_a_row = 0;
        } else {
            self.empty_in_a_row += 1;
        }
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let wait = self.wait;
        self.wait = self.wait.saturating_mul(2).min(self.first_wait.saturating_mul(8));
        Some(wait)
    }
}

/// Empties the `.incomplete` file, to download it from the start.
fn restart(out: &File, part: &Path, state: &mut Partial) -> Result<()> {
    out.set_len(0).map_err(|e| io_fail("write", part, e))?;
    state.have = 0;
    state.inherited = 0;
    Ok(())
}

/// One GET into the `.incomplete` file, from the bytes on disk to the end.
#[allow(clippy::too_many_arguments)]
fn one_try(
    client: &Client,
    ctx: &Ctx,
    meta: &FileMeta,
    file: &str,
    part: &Path,
    out: &mut File,
    state: &mut Partial,
    bar: &dyn Bar,
) -> std::result::Result<(), TryError> {
    state.got = 0;
    let mut first = true;
    let response = loop {
        let from = (state.have > 0).then_some(state.have);
        let (response, url) = match client.send(false, &meta.download_url, from, Follow::All) {
            Ok(answer) => answer,
            Err(e) if is_transient(&e) => {
                let cause = client.net_cause(&e);
                return Err(TryError::Transient(Transient::NoAnswer {
                    url: meta.download_url.clone(),
                    cause,
                }));
            }
            Err(e) => {
                let cause = client.net_cause(&e);
                return Err(TryError::Fatal(client.unreachable(&meta.download_url, file, &cause)));
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers();
        match status {
            206 => {
                let range = header(headers, "content-range").and_then(|r| parse_content_range(&r));
                match range {
                    Some((start, total)) if start == state.have => {
                        state.size = meta.size.or(total).or(state.size);
                        break response;
                    }
                    // Not the part asked for: start over from the beginning.
                    _ if first => restart(out, part, state).map_err(TryError::Fatal)?,
                    _ => {
                        return Err(TryError::Fatal(fail(
                            FetchErrorKind::BadResponse,
                            format!(
                                "the server at {} sent a wrong part of {file} (Content-Range {:?})",
                                origin(&url),
                                header(headers, "content-range")
                            ),
                        )))
                    }
                }
            }
            200 => {
                if state.have > 0 {
                    // The server ignored Range and sends the whole file: restart the file.
                    restart(out, part, state).map_err(TryError::Fatal)?;
                }
                let total = header(headers, "content-length").and_then(|l| l.parse().ok());
                state.size = meta.size.or(total).or(state.size);
                break response;
            }
            416 if first && state.have > 0 => restart(out, part, state).map_err(TryError::Fatal)?,
            408 | 429 | 500..=599 => return Err(TryError::Transient(Transient::Status { url, status })),
            _ => {
                if same_origin(&url, ctx.endpoint) {
                    return Err(TryError::Fatal(client.http_error(status, headers, ctx, ctx.revision, file)));
                }
                return Err(TryError::Fatal(fail(
                    FetchErrorKind::BadResponse,
                    format!(
                        "downloading {file} of \"{}\" failed: {} answered HTTP {status}; run again to retry",
                        ctx.model_id,
                        origin(&url)
                    ),
                )));
            }
        }
        first = false;
    };

    if let Some(size) = state.size {
        bar.set_total(size);
    }
    bar.set(state.have);
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = out.flush();
                return Err(TryError::Transient(Transient::Cut(e.to_string())));
            }
        };
        out.write_all(&buf[..n]).map_err(|e| TryError::Fatal(io_fail("write", part, e)))?;
        state.have += n as u64;
        state.got += n as u64;
        bar.set(state.have);
    }
    out.flush().map_err(|e| TryError::Fatal(io_fail("write", part, e)))?;
    match state.size {
        Some(size) if state.have < size => {
            Err(TryError::Transient(Transient::Cut("the connection ended early".to_string())))
        }
        _ => Ok(()),
    }
}

/// Whether a request that got no HTTP answer is worth another try: the network may come back.
fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

/// The error after the last try of a download.
fn gave_up(
    client: &Client,
    ctx: &Ctx,
    file: &str,
    part: &Path,
    state: &Partial,
    retry: &Retry,
    last: &Transient,
) -> anyhow::Error {
    let model_id = ctx.model_id;
    let tries = retry.tries;
    let tried = if tries == 1 { "1 try".to_string() } else { format!("{tries} tries") };
    let cause = last.cause();
    if state.have > 0 {
        let of = state.size.map(|s| format!(" of {s}")).unwrap_or_default();
        let empty = match retry.empty_in_a_row {
            0 => String::new(),
            1 if tries == 1 => ", which brought no new bytes".to_string(),
            n if n == tries => ", none of which brought new bytes".to_string(),
            1 => ", the last without new bytes".to_string(),
            n => format!(", the last {n} without new bytes"),
        };
        return fail(
            FetchErrorKind::Interrupted,
            format!(
                "the download of {file} for \"{model_id}\" stopped after {tried}{empty} (last: {cause}); {}{of} bytes are kept in {}: run again to resume from there",
                state.have,
                part.display()
            ),
        );
    }
    match last {
        Transient::NoAnswer { url, cause } => client.unreachable(url, file, &format!("{cause}; {tried}")),
        Transient::Status { url, status } => fail(
            FetchErrorKind::BadResponse,
            format!(
                "downloading {file} of \"{model_id}\" failed: {} answered HTTP {status}{}; run again later",
                origin(url),
                if tries > 1 { format!(" to each of {tries} tries") } else { String::new() }
            ),
        ),
        Transient::Cut(cause) => fail(
            FetchErrorKind::Interrupted,
            format!(
                "the download of {file} for \"{model_id}\" stopped after {tried} before any byte arrived (last: {cause}); run again to retry"
            ),
        ),
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL when given).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

// ---------------------------------------------------------------------------------------------
// HTTP.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Follow relative redirects only (a renamed repo), stop at an absolute one (the CDN), as
    /// Python's `huggingface_hub` does for its metadata request.
    Relative,
    All,
}

struct Client {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
    resolve_timeout: Duration,
    connect_timeout: Duration,
    read_timeout: Duration,
    retries: u32,
    retry_wait: Duration,
}

type Response = ureq::http::Response<ureq::Body>;

fn header(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string())
}

impl Client {
    fn new(settings: &Settings, opts: &FetchOptions) -> Self {
        let some = |d: Duration| (!d.is_zero()).then_some(d);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_resolve(some(opts.resolve_timeout))
            .timeout_connect(some(opts.connect_timeout))
            .timeout_per_read(some(opts.read_timeout))
            .user_agent(format!("neoprobe/{}", env!("CARGO_PKG_VERSION")))
            // Sizes and hashes are those of the raw file: never let a server compress it.
            .accept_encoding("identity")
            .build();
        Self {
            agent: config.into(),
            endpoint: settings.endpoint.clone(),
            token: settings.token.clone(),
            resolve_timeout: opts.resolve_timeout,
            connect_timeout: opts.connect_timeout,
            read_timeout: opts.read_timeout,
            retries: opts.retries,
            retry_wait: opts.retry_wait,
        }
    }

    /// Sends a request, following redirects by hand so that the token only ever goes to the
    /// hub's own origin. Returns the last response and its URL.
    fn send(
        &self,
        head: bool,
        url: &str,
        from: Option<u64>,
        follow: Follow,
    ) -> std::result::Result<(Response, String), ureq::Error> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = if head { self.agent.head(&url) } else { self.agent.get(&url) };
            if let Some(token) = &self.token {
                if same_origin(&url, &self.endpoint) {
                    request = request.header("Authorization", format!("Bearer {token}"));
                }
            }
            if let Some(from) = from {
                request = request.header("Range", format!("bytes={from}-"));
            }
            let response = request.call()?;
            if response.status().is_redirection() {
                if let Some(location) = header(response.headers(), "location") {
                    if follow == Follow::Relative && location.contains("://") {
                        return Ok((response, url));
                    }
                    url = join_url(&url, &location);
                    continue;
                }
            }
            return Ok((response, url));
        }
        Err(ureq::Error::TooManyRedirects)
    }

    /// `HEAD /{repo}/resolve/{revision}/{file}`, as Python's `get_hf_file_metadata` does.
    fn metadata(&self, ctx: &Ctx, revision: &str, file: &str) -> Result<FileMeta> {
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            ctx.model_id,
            percent_encode(revision, false),
            percent_encode(file, true)
        );
        let (response, final_url) = self
            .send(true, &url, None, Follow::Relative)
            .map_err(|e| self.unreachable(&url, file, &self.net_cause(&e)))?;
        let status = response.status();
        let headers = response.headers();
        if !(status.is_success() || status.is_redirection()) {
            return Err(self.http_error(status.as_u16(), headers, ctx, revision, file));
        }
        let not_hub = |what: &str| {
            fail(
                FetchErrorKind::BadResponse,
                format!(
                    "the server at {} does not answer like the Hugging Face hub ({what} for {file}); check HF_ENDPOINT, or pass --model-dir DIR with local files",
                    self.endpoint
                ),
            )
        };
        let commit = header(headers, "x-repo-commit").ok_or_else(|| not_hub("no X-Repo-Commit"))?;
        if !is_commit_hash(&commit) {
            return Err(not_hub("a malformed X-Repo-Commit"));
        }
        let etag = header(headers, "x-linked-etag")
            .or_else(|| header(headers, "etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .ok_or_else(|| not_hub("no ETag"))?;
        if !is_safe_etag(&etag) {
            return Err(not_hub("a malformed ETag"));
        }
        let size = header(headers, "x-linked-size")
            .or_else(|| status.is_success().then(|| header(headers, "content-length")).flatten())
            .and_then(|s| s.parse().ok());
        let download_url = if status.is_redirection() {
            let location =
                header(headers, "location").ok_or_else(|| not_hub("a redirect without Location"))?;
            join_url(&final_url, &location)
        } else {
            // Name the commit, not the branch, so the content cannot change between this HEAD
            // and the GET.
            format!("{}/{}/resolve/{commit}/{}", self.endpoint, ctx.model_id, percent_encode(file, true))
        };
        Ok(FileMeta { commit, etag, size, download_url })
    }

    /// Turns a hub error status into a message, using the hub's `X-Error-Code` when present and,
    /// for a bare 404 (mirrors may not send the code), asking the repo API whether the repo and
    /// revision exist.
    fn http_error(
        &self,
        status: u16,
        headers: &ureq::http::HeaderMap,
        ctx: &Ctx,
        revision: &str,
        file: &str,
    ) -> anyhow::Error {
        let model_id = ctx.model_id;
        let endpoint = &self.endpoint;
        let repo_missing = || {
            fail(
                FetchErrorKind::NotFound,
                format!(
                    "model \"{model_id}\" was not found on the hub at {endpoint} (it does not exist, or it is private and needs HF_TOKEN): check the model id"
                ),
            )
        };
        let revision_missing = || {
            fail(
                FetchErrorKind::NotFound,
                format!(
                    "revision \"{}\" of model \"{model_id}\" was not found on the hub at {endpoint}: check the revision",
                    ctx.revision
                ),
            )
        };
        let file_missing = || {
            let needs = if MODEL_FILES.contains(&file) || file == WEIGHTS_INDEX {
                format!("neoprobe needs {} from a GPT-Neo repo", MODEL_FILES.join(", "))
            } else {
                format!(
                    "its {WEIGHTS_INDEX} names that shard: choose a revision that has every shard, or pass --model-dir DIR with local files"
                )
            };
            fail(
                FetchErrorKind::FileNotFound,
                format!(
                    "model \"{model_id}\" (revision {}) has no file \"{file}\" on the hub at {endpoint}; {needs}",
                    ctx.revision
                ),
            )
        };
        match header(headers, "x-error-code").as_deref() {
            Some("RepoNotFound") => return repo_missing(),
            Some("RevisionNotFound") => return revision_missing(),
            Some("EntryNotFound") => return file_missing(),
            Some("GatedRepo") => {
                return fail(
                    FetchErrorKind::AccessDenied,
                    format!(
                        "model \"{model_id}\" is gated on the hub at {endpoint}: accept its conditions on the model page, then set HF_TOKEN"
                    ),
                )
            }
            _ => {}
        }
        match status {
            401 => repo_missing(),
            403 => fail(
                FetchErrorKind::AccessDenied,
                format!(
                    "the hub at {endpoint} refused access to model \"{model_id}\" (HTTP 403): check HF_TOKEN"
                ),
            ),
            404 => {
                let api = format!(
                    "{endpoint}/api/models/{model_id}/revision/{}",
                    percent_encode(revision, false)
                );
                match self.send(false, &api, None, Follow::Relative) {
                    Ok((r, _)) if r.status().is_success() => file_missing(),
                    Ok((r, _)) if matches!(r.status().as_u16(), 401 | 404) => fail(
                        // Without the hub's error code a missing repo and a missing revision
                        // look alike: name both.
                        FetchErrorKind::NotFound,
                        format!(
                            "model \"{model_id}\" at revision \"{}\" was not found on the hub at {endpoint}: check the model id and revision",
                            ctx.revision
                        ),
                    ),
                    _ => fail(
                        FetchErrorKind::FileNotFound,
                        format!(
                            "the hub at {endpoint} has no {file} for model \"{model_id}\" at revision \"{}\" (HTTP 404): check the model id and revision",
                            ctx.revision
                        ),
                    ),
                }
            }
            _ => fail(
                FetchErrorKind::BadResponse,
                format!(
                    "the hub at {endpoint} answered HTTP {status} for {file} of \"{model_id}\"; run again later"
                ),
            ),
        }
    }

    /// What went wrong with a request that got no HTTP answer at all.
    fn net_cause(&self, e: &ureq::Error) -> String {
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        match e {
            ureq::Error::HostNotFound => "the host name does not resolve".to_string(),
            ureq::Error::Timeout(ureq::Timeout::Resolve) => {
                format!("no DNS answer within {}", secs(self.resolve_timeout))
            }
            ureq::Error::Timeout(ureq::Timeout::Connect) => {
                format!("no connection within {}", secs(self.connect_timeout))
            }
            ureq::Error::Timeout(_) => format!("no answer within {}", secs(self.read_timeout)),
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                "connection refused".to_string()
            }
            ureq::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        }
    }

    /// The error for a request to `url` that got no HTTP answer, for `cause`.
    fn unreachable(&self, url: &str, file: &str, cause: &str) -> anyhow::Error {
        if same_origin(url, &self.endpoint) {
            fail(
                FetchErrorKind::Unreachable,
                format!(
                    "cannot reach the Hugging Face hub at {} ({cause}): pass --model-dir DIR with local config.json, model.safetensors and tokenizer.json, or set HF_HUB_OFFLINE=1 to use only the local cache",
                    self.endpoint
                ),
            )
        } else {
            fail(
                FetchErrorKind::Unreachable,
                format!(
                    "cannot reach {}, where the hub at {} sends the download of {file} ({cause}); check the network and run again, or pass --model-dir DIR with local files",
                    origin(url),
                    self.endpoint
                ),
            )
        }
    }
}

/// `scheme://authority` of a URL, lowercased.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{}://{}", scheme, authority).to_ascii_lowercase()
}

fn same_origin(a: &str, b: &str) -> bool {
    origin(a) == origin(b)
}

/// Resolves a `Location` header against the URL it answered.
fn join_url(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split_once("://").map(|(s, _)| s).unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{}", origin_raw(base), location)
    } else {
        let path_end = base.find(['?', '#']).unwrap_or(base.len());
        let dir_end = base[..path_end].rfind('/').map(|i| i + 1).unwrap_or(path_end);
        let dir_end = dir_end.max(origin_raw(base).len());
        let mut joined = base[..dir_end].to_string();
        if !joined.ends_with('/') {
            joined.push('/');
        }
        joined + location
    }
}

fn origin_raw(url: &str) -> &str {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[start..].find(['/', '?', '#']).map(|i| start + i).unwrap_or(url.len());
    &url[..end]
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`), like
/// Python's `quote(revision, safe="")` / `quote(filename)`.
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn retry_waits_double_up_to_eight_times_the_first_then_give_up() {
        let mut retry = Retry::new(5, ms(100));
        let waits: Vec<_> = (0..6).map(|_| retry.failed(false)).collect();
        assert_eq!(waits, [Some(ms(100)), Some(ms(200)), Some(ms(400)), Some(ms(800)), Some(ms(800)), None]);
        assert_eq!((retry.tries, retry.empty_in_a_row), (6, 6));
    }

    #[test]
    fn retry_starts_over_when_a_try_brings_bytes() {
        let mut retry = Retry::new(2, ms(10));
        assert_eq!(retry.failed(false), Some(ms(10)));
        assert_eq!(retry.failed(false), Some(ms(20)));
        // Bytes arrived: the count and the wait start over ...
        assert_eq!(retry.failed(true), Some(ms(10)));
        assert_eq!(retry.failed(false), Some(ms(20)));
        // ... and `retries` retries without bytes are allowed again, no more.
        assert_eq!(retry.failed(false), None);
        assert_eq!((retry.tries, retry.empty_in_a_row), (5, 2));
    }

    #[test]
    fn retry_with_no_retries_gives_up_at_the_first_failure() {
        let mut retry = Retry::new(0, ms(10));
        assert_eq!(retry.failed(true), None);
        assert_eq!(retry.tries, 1);
    }

    #[test]
    fn retry_waits_saturate_instead_of_overflowing() {
        let mut retry = Retry::new(3, Duration::MAX);
        assert_eq!(retry.failed(false), Some(Duration::MAX));
        assert_eq!(retry.failed(false), Some(Duration::MAX));
    }
}
