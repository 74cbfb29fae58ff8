//! A local stand-in for the Hugging Face hub, speaking its file protocol closely enough for
//! both neoprobe's `hub` module and the `hf-hub` crate to download from it:
//!
//! * `HEAD`/`GET /{repo}/resolve/{revision}/{file}`: for a regular (git) file, 200 (or 206 for a
//!   `Range`) with `ETag: "<git blob sha1>"`, `X-Repo-Commit`, `Content-Length`; for an LFS file,
//!   a 302 to the "CDN" listener (another port, so another origin) with `X-Linked-Etag:
//!   "<sha256>"`, `X-Linked-Size`, `X-Repo-Commit`, and an `ETag` of the LFS *pointer*, as the
//!   hub does (a client that reads `ETag` instead of `X-Linked-Etag` gets the wrong blob name).
//! * `GET /lfs/{sha256}` on the CDN: the content, with `Range` support, and the faults below.
//! * Errors as the hub gives them: unknown or private repo → 401 (404 when a token was sent)
//!   with `X-Error-Code: RepoNotFound`; unknown revision → 404 `RevisionNotFound`; unknown file →
//!   404 `EntryNotFound`; `/api/models/{repo}/revision/{rev}` for clients that probe.
//! * A renamed repo answers with a relative 307 to its new name.
//! * Discussions and pull requests: `GET /api/models/{repo}/discussions?p=N[&type=..][&status=..]`
//!   pages them ([`DISCUSSIONS_PAGE`] a page) as the hub's API does, `GET
//!   /api/models/{repo}/commits/{revision}` lists a revision's commits newest first, and a pull
//!   request's files resolve at `refs/pr/{num}` or at its head commit.
//!
//! Every connection and request is recorded. Each connection serves one request and is closed
//! (`Connection: close`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::Duration;

pub const REPO: &str = "test-org/tiny-model";
pub const COMMIT: &str = "5a1e7c0ffee0b5e55ed0123456789abcdef01234";

/// Environment variables are process-wide: every test holds this lock, shared, while it runs;
/// the test that changes the environment holds it exclusively.
static ENV: RwLock<()> = RwLock::new(());

pub fn env_shared() -> RwLockReadGuard<'static, ()> {
    ENV.read().unwrap_or_else(|e| e.into_inner())
}

pub fn env_exclusive() -> RwLockWriteGuard<'static, ()> {
    ENV.write().unwrap_or_else(|e| e.into_inner())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The git blob id of `bytes`: sha1 of `blob {len}\0` followed by the content.
pub fn git_sha1_hex(bytes: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(format!("blob {}\0", bytes.len()).as_bytes());
    ctx.update(bytes);
    hex(ctx.finish().as_ref())
}

#[derive(Clone)]
pub struct FakeFile {
    pub name: String,
    pub bytes: Vec<u8>,
    pub lfs: bool,
}

impl FakeFile {
    /// What the hub calls the file, and what the cache names its blob.
    pub fn etag(&self) -> String {
        if self.lfs {
            sha256_hex(&self.bytes)
        } else {
            git_sha1_hex(&self.bytes)
        }
    }

    fn pointer(&self) -> Vec<u8> {
        format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
            sha256_hex(&self.bytes),
            self.bytes.len()
        )
        .into_bytes()
    }
}

#[derive(Clone)]
pub struct FakeRepo {
    pub id: String,
    pub commit: String,
    pub files: Vec<FakeFile>,
    /// A private repo: only requests with `Authorization: Bearer {token}` see it.
    pub token: Option<String>,
    /// Old names that redirect (relative 307) to this repo.
    pub renamed_from: Vec<String>,
    /// Its discussions and pull requests.
    pub discussions: Vec<FakeDiscussion>,
}

/// The hub's discussions API pages its answers; this fake uses small pages so that tests page.
pub const DISCUSSIONS_PAGE: usize = 2;

/// A discussion, or a pull request (with a head commit on top of `parent`, holding `files`).
#[derive(Clone)]
pub struct FakeDiscussion {
    pub num: u64,
    pub title: String,
    pub author: String,
    /// "open", "closed", "merged" or "draft".
    pub status: String,
    pub is_pull_request: bool,
    pub commit: String,
    pub parent: String,
    pub files: Vec<FakeFile>,
}

impl FakeDiscussion {
    /// An open pull request by `author` whose head `commit` sits on `parent`.
    pub fn pull_request(
        num: u64,
        title: &str,
        author: &str,
        commit: &str,
        parent: &str,
        files: Vec<FakeFile>,
    ) -> Self {
        Self {
            num,
            title: title.to_string(),
            author: author.to_string(),
            status: "open".to_string(),
            is_pull_request: true,
            commit: commit.to_string(),
            parent: parent.to_string(),
            files,
        }
    }
}

impl FakeRepo {
    pub fn new(id: &str, files: Vec<FakeFile>) -> Self {
        Self {
            id: id.to_string(),
            commit: COMMIT.to_string(),
            files,
            token: None,
            renamed_from: Vec::new(),
            discussions: Vec::new(),
        }
    }

    pub fn file(&self, name: &str) -> &FakeFile {
        self.files.iter().find(|f| f.name == name).expect("fixture file")
    }

    /// The commit and files of a revision: `main` or the repo's commit, or a pull request's
    /// `refs/pr/{num}` or head commit. (A pull request's parent resolves only as `main` does.)
    pub fn revision(&self, rev: &str) -> Option<(&str, &[FakeFile])> {
        if rev == "main" || rev == self.commit {
            return Some((&self.commit, &self.files));
        }
        self.discussions
            .iter()
            .filter(|d| d.is_pull_request)
            .find(|d| rev == format!("refs/pr/{}", d.num) || rev == d.commit)
            .map(|d| (d.commit.as_str(), d.files.as_slice()))
    }
}

/// Small deterministic pseudo-random bytes.
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// The three files of a tiny GPT-Neo-like repo: a real safetensors file of about 300 KB (LFS),
/// and two JSON files (regular git files).
pub fn tiny_model_files() -> Vec<FakeFile> {
    let config = serde_json::json!({
        "architectures": ["GPTNeoForCausalLM"],
        "model_type": "gpt_neo",
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 4,
        "vocab_size": 1000,
        "max_position_embeddings": 128,
        "attention_types": [[["global", "local"], 1]],
        "window_size": 256
    });
    let vocab: serde_json::Map<String, serde_json::Value> =
        (0..1000).map(|i| (format!("tok{i}"), serde_json::Value::from(i))).collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "model": { "type": "BPE", "vocab": vocab, "merges": [] }
    });
    let wte = noise(1000 * 64 * 4, 7);
    let wpe = noise(128 * 64 * 4, 11);
    let ln = noise(64 * 4, 13);
    let tensors = vec![
        (
            "transformer.wte.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1000, 64], &wte).unwrap(),
        ),
        (
            "transformer.wpe.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![128, 64], &wpe).unwrap(),
        ),
        (
            "transformer.ln_f.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![64], &ln).unwrap(),
        ),
    ];
    let weights = safetensors::serialize(tensors, None).unwrap();
    vec![
        FakeFile {
            name: "config.json".into(),
            bytes: serde_json::to_vec_pretty(&config).unwrap(),
            lfs: false,
        },
        FakeFile { name: "model.safetensors".into(), bytes: weights, lfs: true },
        FakeFile {
            name: "tokenizer.json".into(),
            bytes: serde_json::to_vec(&tokenizer).unwrap(),
            lfs: false,
        },
    ]
}

/// The tiny GPT-Neo fixture model (a real one: 12 blocks, the GPT-2 tokenizer).
pub const TINY: &str = "fixtures/tiny-neo";

/// A stand-in for a pickled checkpoint file: never a real pickle, and never to be downloaded.
pub fn pickle_file(name: &str) -> FakeFile {
    FakeFile {
        name: name.into(),
        bytes: format!("not a pickle: {name}").repeat(1000).into_bytes(),
        lfs: true,
    }
}

/// A `.bin`-only revision of the tiny repo: its JSON files and `pickles`.
pub fn pickled_files(pickles: &[&str]) -> Vec<FakeFile> {
    let mut files: Vec<_> =
        tiny_model_files().into_iter().filter(|f| f.name != "model.safetensors").collect();
    files.extend(pickles.iter().map(|p| pickle_file(p)));
    files
}

/// What the hub's conversion adds: the same repo with `model.safetensors`.
pub fn converted_files(weights_seed: u8) -> Vec<FakeFile> {
    let mut files = tiny_model_files();
    if weights_seed != 0 {
        let last = files[1].bytes.len() - 1;
        files[1].bytes[last] ^= weights_seed;
    }
    files.push(pickle_file("pytorch_model.bin"));
    files
}

/// The safetensors file `weights` split into `n` shards as transformers' `save_pretrained`
/// writes a sharded checkpoint: `model.safetensors.index.json` first, then
/// `model-0000{i}-of-0000{n}.safetensors`, tensors in name order split into `n` runs.
pub fn shard_weights(weights: &[u8], n: usize) -> Vec<(String, Vec<u8>)> {
    let file = safetensors::SafeTensors::deserialize(weights).unwrap();
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let per_shard = tensors.len().div_ceil(n);
    let metadata: std::collections::HashMap<String, String> =
        [("format".to_string(), "pt".to_string())].into();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0;
    let mut shards = Vec::new();
    for (i, chunk) in tensors.chunks(per_shard).enumerate() {
        let name = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        for (tensor, view) in chunk {
            weight_map.insert(tensor.clone(), name.clone().into());
            total += view.data().len();
        }
        let bytes =
            safetensors::serialize(chunk.iter().map(|(t, v)| (t.clone(), v.clone())), Some(metadata.clone()))
                .unwrap();
        shards.push((name, bytes));
    }
    assert_eq!(shards.len(), n, "fewer tensors than shards");
    let index = serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    let mut files =
        vec![("model.safetensors.index.json".to_string(), serde_json::to_vec_pretty(&index).unwrap())];
    files.extend(shards);
    files
}

/// The fixture model as a hub repo: `config.json` (a git file), `tokenizer.json` and the weights
/// (LFS files), as one `model.safetensors` (`shards` 1) or as an index and `shards` shards.
pub fn fixture_files(shards: usize) -> Vec<FakeFile> {
    let read = |name: &str| std::fs::read(std::path::Path::new(TINY).join(name)).unwrap();
    let mut files = vec![
        FakeFile { name: "config.json".into(), bytes: read("config.json"), lfs: false },
        FakeFile { name: "tokenizer.json".into(), bytes: read("tokenizer.json"), lfs: true },
    ];
    let weights = read("model.safetensors");
    if shards == 1 {
        files.push(FakeFile { name: "model.safetensors".into(), bytes: weights, lfs: true });
    } else {
        for (name, bytes) in shard_weights(&weights, shards) {
            let lfs = name.ends_with(".safetensors");
            files.push(FakeFile { name, bytes, lfs });
        }
    }
    files
}

/// Misbehaviour on demand. The faults apply to GETs of LFS content served by the CDN: `statuses`
/// first, then `cuts`, then each body fault to the next `*_times` such responses.
#[derive(Clone, Default)]
pub struct Faults {
    /// Answer the next GETs with these statuses, in order, instead of the content.
    pub statuses: Vec<u16>,
    /// Close the next responses after these many body bytes, in order (one entry per response).
    pub cuts: Vec<u64>,
    /// Close the connection after this many body bytes.
    pub cut_after: u64,
    pub cut_times: usize,
    /// Send this many body bytes, then go silent for `stall_for`, then close.
    pub stall_after: u64,
    pub stall_for: Duration,
    pub stall_times: usize,
    /// Flip one byte in the middle of the body (same length).
    pub corrupt_times: usize,
    /// Answer 200 with the whole file even when a Range is asked for.
    pub ignore_range: bool,
    /// Answer 206 with the part starting one byte after the one asked for (or after 0).
    pub wrong_range: bool,
    /// Leave out `X-Error-Code`/`X-Error-Message` (as a plain mirror might).
    pub no_error_codes: bool,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Served by the CDN listener rather than the hub's.
    pub cdn: bool,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

struct Shared {
    repos: Vec<FakeRepo>,
    faults: Mutex<Faults>,
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    cdn_url: Mutex<String>,
    stop: AtomicBool,
}

pub struct FakeHub {
    pub url: String,
    pub cdn_url: String,
    shared: Arc<Shared>,
    addrs: Vec<std::net::SocketAddr>,
}

impl FakeHub {
    pub fn start(repos: Vec<FakeRepo>) -> Self {
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", hub.local_addr().unwrap().port());
        let cdn_url = format!("http://127.0.0.1:{}", cdn.local_addr().unwrap().port());
        let shared = Arc::new(Shared {
            repos,
            faults: Mutex::new(Faults::default()),
            seen: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            cdn_url: Mutex::new(cdn_url.clone()),
            stop: AtomicBool::new(false),
        });
        let addrs = vec![hub.local_addr().unwrap(), cdn.local_addr().unwrap()];
        for (listener, is_cdn) in [(hub, false), (cdn, true)] {
            let shared = shared.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let shared = shared.clone();
                    thread::spawn(move || {
                        let _ = handle(stream, &shared, is_cdn);
                    });
                }
            });
        }
        Self { url, cdn_url, shared, addrs }
    }

    pub fn tiny() -> Self {
        Self::start(vec![FakeRepo::new(REPO, tiny_model_files())])
    }

    pub fn repo(&self, id: &str) -> &FakeRepo {
        self.shared.repos.iter().find(|r| r.id == id).expect("repo")
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn reset_counts(&self) {
        self.shared.seen.lock().unwrap().clear();
        self.shared.connections.store(0, Ordering::SeqCst);
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for addr in &self.addrs {
            let _ = TcpStream::connect_timeout(addr, Duration::from_millis(200));
        }
    }
}

struct Request {
    method: String,
    target: String,
    range: Option<String>,
    authorization: Option<String>,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => authorization = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    Ok(Request { method, target, range, authorization })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Length announced in Content-Length (the body may be cut short by a fault).
    length: usize,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn error_reply(shared: &Shared, status: u16, code: &str, message: &str) -> Reply {
    let faults = shared.faults.lock().unwrap().clone();
    let mut headers = vec![("Content-Type".into(), "text/plain; charset=utf-8".into())];
    if !faults.no_error_codes {
        headers.push(("X-Error-Code".into(), code.into()));
        headers.push(("X-Error-Message".into(), message.into()));
    }
    let body = format!("{code}: {message}").into_bytes();
    Reply { status, headers, length: body.len(), body }
}

/// 200 with the whole content, or 206/416 for a Range, as any HTTP file server does.
fn content_reply(bytes: &[u8], range: Option<&str>, ignore_range: bool) -> Reply {
    let len = bytes.len();
    let parsed = range.filter(|_| !ignore_range).and_then(|r| {
        let spec = r.strip_prefix("bytes=")?;
        let (a, b) = spec.split_once('-')?;
        let a: usize = a.parse().ok()?;
        let b: usize = if b.is_empty() { len.saturating_sub(1) } else { b.parse().ok()? };
        Some((a, b.min(len.saturating_sub(1))))
    });
    let mut headers = vec![("Accept-Ranges".to_string(), "bytes".to_string())];
    match parsed {
        Some((a, _)) if a >= len => {
            headers.push(("Content-Range".into(), format!("bytes */{len}")));
            Reply { status: 416, headers, body: Vec::new(), length: 0 }
        }
        Some((a, b)) => {
            headers.push(("Content-Range".into(), format!("bytes {a}-{b}/{len}")));
            let body = bytes[a..=b].to_vec();
            Reply { status: 206, headers, length: body.len(), body }
        }
        None => Reply { status: 200, headers, body: bytes.to_vec(), length: len },
    }
}

/// 206 with the content from one byte after the requested start (0 without a Range).
fn wrong_part_reply(bytes: &[u8], range: Option<&str>) -> Reply {
    let asked: usize = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let start = (asked + 1).min(bytes.len().saturating_sub(1));
    let body = bytes[start..].to_vec();
    let headers =
        vec![("Content-Range".into(), format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()))];
    Reply { status: 206, headers, length: body.len(), body }
}

fn handle(mut stream: TcpStream, shared: &Shared, is_cdn: bool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let req = read_request(&stream)?;
    shared.seen.lock().unwrap().push(Seen {
        method: req.method.clone(),
        target: req.target.clone(),
        cdn: is_cdn,
        range: req.range.clone(),
        authorization: req.authorization.clone(),
    });
    let faults = shared.faults.lock().unwrap().clone();
    let path = req.target.split('?').next().unwrap_or("").to_string();
    let mut body_fault = false;
    let reply = if is_cdn {
        let sha = path.strip_prefix("/lfs/").unwrap_or("");
        let file = shared
            .repos
            .iter()
            .flat_map(|r| r.files.iter().chain(r.discussions.iter().flat_map(|d| d.files.iter())))
            .find(|f| f.lfs && sha256_hex(&f.bytes) == sha);
        match file {
            Some(f) => {
                body_fault = req.method == "GET";
                let mut reply = if faults.wrong_range {
                    wrong_part_reply(&f.bytes, req.range.as_deref())
                } else {
                    content_reply(&f.bytes, req.range.as_deref(), faults.ignore_range)
                };
                reply.headers.push(("ETag".into(), format!("\"s3-{}\"", &sha[..16])));
                reply
            }
            None => Reply { status: 404, headers: vec![], body: b"NoSuchKey".to_vec(), length: 9 },
        }
    } else {
        hub_reply(shared, &req, &path)
    };

    let mut reply = reply;
    let mut cut: Option<u64> = None;
    let mut stall: Option<(u64, Duration)> = None;
    if body_fault {
        let mut f = shared.faults.lock().unwrap();
        if !f.statuses.is_empty() {
            let status = f.statuses.remove(0);
            let body = format!("fault: HTTP {status}").into_bytes();
            reply = Reply { status, headers: vec![], length: body.len(), body };
        } else if !f.cuts.is_empty() {
            cut = Some(f.cuts.remove(0));
        } else if f.cut_times > 0 {
            f.cut_times -= 1;
            cut = Some(f.cut_after);
        } else if f.stall_times > 0 {
            f.stall_times -= 1;
            stall = Some((f.stall_after, f.stall_for));
        } else if f.corrupt_times > 0 && !reply.body.is_empty() {
            f.corrupt_times -= 1;
            let mid = reply.body.len() / 2;
            reply.body[mid] ^= 0x5a;
        }
    }

    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", reply.length));
    stream.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        match (cut, stall) {
            (Some(n), _) => {
                let n = (n as usize).min(reply.body.len());
                stream.write_all(&reply.body[..n])?;
                stream.flush()?;
                // Drain nothing, close: the client sees the body end early.
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            (None, Some((n, pause))) => {
                let n = (n as usize).min(reply.body.len());
                stream.write_all(&reply.body[..n])?;
                stream.flush()?;
                thread::sleep(pause);
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => stream.write_all(&reply.body)?,
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    // Let the client read everything before the socket goes away.
    let mut sink = [0u8; 64];
    let _ = stream.read(&mut sink);
    Ok(())
}

fn json_reply(value: serde_json::Value) -> Reply {
    let body = serde_json::to_vec(&value).unwrap();
    Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        length: body.len(),
        body,
    }
}

/// The value of `key` in the request's query string.
fn query<'a>(req: &'a Request, key: &str) -> Option<&'a str> {
    let (_, q) = req.target.split_once('?')?;
    q.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn api_reply(shared: &Shared, req: &Request, rest: &str) -> Reply {
    if let Some((repo_id, rev)) = rest.split_once("/revision/") {
        let Some(repo) = visible_repo(shared, repo_id, req) else { return not_found_repo(shared, req) };
        return match repo.revision(&percent_decode(rev)) {
            Some((commit, files)) => {
                let siblings: Vec<_> =
                    files.iter().map(|f| serde_json::json!({ "rfilename": f.name })).collect();
                json_reply(serde_json::json!({ "id": repo.id, "sha": commit, "siblings": siblings }))
            }
            None => error_reply(shared, 404, "RevisionNotFound", "Invalid rev id"),
        };
    }
    if let Some((repo_id, rev)) = rest.split_once("/commits/") {
        let Some(repo) = visible_repo(shared, repo_id, req) else { return not_found_repo(shared, req) };
        let rev = percent_decode(rev);
        let commit = |id: &str, title: &str| {
            serde_json::json!({
                "id": id, "title": title, "message": "", "authors": [{ "user": "someone" }],
                "date": "2024-01-01T00:00:00.000Z"
            })
        };
        if rev == "main" || rev == repo.commit {
            return json_reply(serde_json::json!([commit(&repo.commit, "Upload")]));
        }
        return match repo
            .discussions
            .iter()
            .find(|d| d.is_pull_request && rev == format!("refs/pr/{}", d.num))
        {
            Some(d) => {
                json_reply(serde_json::json!([commit(&d.commit, &d.title), commit(&d.parent, "Upload")]))
            }
            None => error_reply(shared, 404, "RevisionNotFound", &format!("Invalid rev id: {rev}")),
        };
    }
    if let Some(repo_id) = rest.strip_suffix("/discussions") {
        let Some(repo) = visible_repo(shared, repo_id, req) else { return not_found_repo(shared, req) };
        let kind = query(req, "type").unwrap_or("all");
        let status = query(req, "status").unwrap_or("all");
        let page: usize = query(req, "p").and_then(|p| p.parse().ok()).unwrap_or(0);
        let matching: Vec<&FakeDiscussion> = repo
            .discussions
            .iter()
            .filter(|d| match kind {
                "pull_request" => d.is_pull_request,
                "discussion" => !d.is_pull_request,
                _ => true,
            })
            .filter(|d| status == "all" || d.status == status)
            .collect();
        let start = page * DISCUSSIONS_PAGE;
        let listed: Vec<_> = matching
            .iter()
            .skip(start)
            .take(DISCUSSIONS_PAGE)
            .map(|d| {
                serde_json::json!({
                    "num": d.num, "title": d.title, "status": d.status, "isPullRequest": d.is_pull_request,
                    "author": { "name": d.author, "type": "user" }, "createdAt": "2024-01-01T00:00:00.000Z",
                    "repo": { "name": repo.id, "type": "model" }, "pinned": false, "numComments": 1
                })
            })
            .collect();
        return json_reply(serde_json::json!({
            "discussions": listed, "count": matching.len(), "start": start, "numClosedDiscussions": 0
        }));
    }
    error_reply(shared, 404, "EntryNotFound", "no such route")
}

fn hub_reply(shared: &Shared, req: &Request, path: &str) -> Reply {
    if let Some(rest) = path.strip_prefix("/api/models/") {
        return api_reply(shared, req, rest);
    }
    let Some((repo_id, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return error_reply(shared, 404, "EntryNotFound", "no such route");
    };
    // A renamed repo: relative redirect to the new name, as the hub does.
    if let Some(repo) = shared.repos.iter().find(|r| r.renamed_from.iter().any(|old| old == repo_id)) {
        let location = format!("/{}/resolve/{rest}", repo.id);
        return Reply {
            status: 307,
            headers: vec![("Location".into(), location)],
            body: Vec::new(),
            length: 0,
        };
    }
    let Some(repo) = visible_repo(shared, repo_id, req) else {
        return not_found_repo(shared, req);
    };
    let (rev, file_name) = rest.split_once('/').unwrap_or((rest, ""));
    let rev = percent_decode(rev);
    let Some((commit, files)) = repo.revision(&rev) else {
        return error_reply(shared, 404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
    };
    let file_name = percent_decode(file_name);
    let Some(file) = files.iter().find(|f| f.name == file_name) else {
        return error_reply(
            shared,
            404,
            "EntryNotFound",
            &format!("{file_name} does not exist on \"{rev}\""),
        );
    };
    let faults = shared.faults.lock().unwrap().clone();
    if file.lfs {
        let sha = sha256_hex(&file.bytes);
        let location =
            format!("{}/lfs/{sha}?X-Amz-Expires=3600&X-Amz-Signature=fake", shared.cdn_url.lock().unwrap());
        let body = format!("Found. Redirecting to {location}").into_bytes();
        let headers = vec![
            ("Location".into(), location),
            ("X-Repo-Commit".into(), commit.to_string()),
            ("X-Linked-Etag".into(), format!("\"{sha}\"")),
            ("X-Linked-Size".into(), file.bytes.len().to_string()),
            ("ETag".into(), format!("\"{}\"", git_sha1_hex(&file.pointer()))),
            ("Content-Type".into(), "text/plain; charset=utf-8".into()),
        ];
        return Reply { status: 302, headers, length: body.len(), body };
    }
    let mut reply = content_reply(&file.bytes, req.range.as_deref(), faults.ignore_range);
    reply.headers.push(("ETag".into(), format!("\"{}\"", git_sha1_hex(&file.bytes))));
    reply.headers.push(("X-Repo-Commit".into(), commit.to_string()));
    reply
}

fn visible_repo<'a>(shared: &'a Shared, repo_id: &str, req: &Request) -> Option<&'a FakeRepo> {
    let repo = shared.repos.iter().find(|r| r.id == repo_id)?;
    match &repo.token {
        Some(token) if req.authorization.as_deref() != Some(&format!("Bearer {token}")) => None,
        _ => Some(repo),
    }
}

fn not_found_repo(shared: &Shared, req: &Request) -> Reply {
    // The hub answers 401 to anonymous requests for a missing (or hidden) repo, 404 otherwise.
    let status = if req.authorization.is_some() { 404 } else { 401 };
    error_reply(shared, status, "RepoNotFound", "Repository not found")
}
