//! Integration tests of `neoprobe::hub` against a local fake of the Hugging Face hub
//! (`tests/support`), each with its own temporary `HF_HOME` passed through `FetchOptions`.

mod support;

use neoprobe::hub::{
    fetch_model, FetchError, FetchErrorKind, FetchOptions, CONVERSION_BOT, CONVERSION_TITLE, MODEL_FILES,
};
use neoprobe::model::{GptNeoWeights, ModelDir};
use neoprobe::notes::{Recorded, Silent};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{
    converted_files, env_exclusive, env_shared, fixture_files, pickle_file, pickled_files, sha256_hex,
    tiny_model_files, FakeDiscussion, FakeHub, FakeRepo, Faults, COMMIT, REPO, TINY,
};

fn opts(hub: &FakeHub, home: &Path) -> FetchOptions {
    FetchOptions {
        hf_home: Some(home.to_path_buf()),
        endpoint: Some(hub.url.clone()),
        offline: Some(false),
        read_timeout: Duration::from_secs(5),
        // Retries keep the default count but barely wait, to keep the tests fast.
        retry_wait: Duration::from_millis(5),
        ..FetchOptions::default()
    }
}

fn repo_dir(home: &Path, id: &str) -> PathBuf {
    home.join("hub").join(format!("models--{}", id.replace('/', "--")))
}

fn kind(e: &anyhow::Error) -> FetchErrorKind {
    e.downcast_ref::<FetchError>().unwrap_or_else(|| panic!("not a FetchError: {e:?}")).kind()
}

/// The error as a user sees it, which must be one line with no "Caused by" chain (so `{:?}`,
/// what `main` prints, is that line too, plus a backtrace only if RUST_BACKTRACE asks for one).
fn shown(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    assert!(!text.contains('\n'), "error is not one line: {text}");
    assert_eq!(e.chain().count(), 1, "error has a cause chain: {e:?}");
    text
}

fn assert_files_match(hub: &FakeHub, id: &str, snapshot: &Path) {
    for name in MODEL_FILES {
        let got = fs::read(snapshot.join(name)).unwrap();
        assert!(got == hub.repo(id).file(name).bytes, "{name} differs from the served file");
    }
}

fn lfs_gets(hub: &FakeHub) -> Vec<support::Seen> {
    hub.seen().into_iter().filter(|s| s.cdn && s.method == "GET").collect()
}

fn weights_sha(hub: &FakeHub) -> String {
    hub.repo(REPO).file("model.safetensors").etag()
}

#[test]
fn fresh_download_gives_identical_files_in_the_standard_cache_layout() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let notes = Recorded::default();
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &notes).unwrap();
    // The library prints nothing; it tells its caller what it does.
    let steps = notes.lines();
    assert!(steps.iter().any(|(_, line)| line.starts_with(&format!("downloading {REPO}"))), "{steps:?}");

    let repo = repo_dir(home.path(), REPO);
    assert_eq!(snapshot, repo.join("snapshots").join(COMMIT));
    assert_files_match(&hub, REPO, &snapshot);
    for file in &hub.repo(REPO).files {
        // blobs/{etag}: sha256 for the LFS weights, git blob sha1 for the JSON files ...
        let etag = file.etag();
        assert_eq!(fs::read(repo.join("blobs").join(&etag)).unwrap(), file.bytes);
        // ... and snapshots/{commit}/{file} -> ../../blobs/{etag}, as huggingface_hub makes it.
        let link = fs::read_link(snapshot.join(&file.name)).unwrap();
        assert_eq!(link, Path::new("../../blobs").join(&etag), "{}", file.name);
    }
    assert_eq!(weights_sha(&hub).len(), 64, "the weights blob is named by its sha256");
    assert_eq!(fs::read_to_string(repo.join("refs").join(COMMIT)).unwrap(), COMMIT);
    // Nothing temporary is left behind.
    let mut leftovers = Vec::new();
    for dir in [repo.clone(), repo.join("blobs"), snapshot.clone()] {
        for entry in fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".incomplete") || name.ends_with(".tmp") {
                leftovers.push(name);
            }
        }
    }
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    // The weights came from the CDN the hub redirected to.
    assert_eq!(lfs_gets(&hub).len(), 1);
}

#[test]
fn second_fetch_makes_no_request_at_all() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let first = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert!(hub.connections() > 0);
    hub.reset_counts();
    let second = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_eq!(first, second);
    assert_eq!(hub.connections(), 0, "requests: {:?}", hub.seen());
    assert!(hub.seen().is_empty());
}

#[test]
fn offline_with_the_files_cached_works_without_the_network() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let online = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    hub.reset_counts();
    let offline = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    assert_eq!(fetch_model(REPO, COMMIT, &offline, &Silent).unwrap(), online);
    assert_eq!(hub.connections(), 0);
}

#[test]
fn offline_without_the_files_fails_fast_with_the_model_dir_hint() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let o = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    let (result, elapsed) = fetch_within(Duration::from_secs(5), REPO, COMMIT, &o);
    let err = result.unwrap_err();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(kind(&err), FetchErrorKind::NotCached);
    let text = shown(&err);
    assert!(text.contains("not in the Hugging Face cache"), "{text}");
    assert!(text.contains(&home.path().join("hub").display().to_string()), "{text}");
    assert!(text.contains("--model-dir"), "{text}");
    assert!(text.contains(REPO), "{text}");
    assert_eq!(hub.connections(), 0, "offline mode made a request");
    assert!(!home.path().join("hub").exists(), "offline mode wrote to the cache");
}

/// Runs `fetch_model` on another thread and fails the test, rather than hanging it, if no
/// answer comes within `deadline`. Returns the result and how long it took.
fn fetch_within(
    deadline: Duration,
    model_id: &str,
    revision: &str,
    o: &FetchOptions,
) -> (anyhow::Result<PathBuf>, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (model_id, revision, o) = (model_id.to_string(), revision.to_string(), o.clone());
    std::thread::spawn(move || {
        let start = Instant::now();
        let result = fetch_model(&model_id, &revision, &o, &Silent);
        let _ = tx.send((result, start.elapsed()));
    });
    rx.recv_timeout(deadline).unwrap_or_else(|_| panic!("fetch_model did not return within {deadline:?}"))
}

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn unreachable_endpoint_fails_fast_with_a_clear_message() {
    let _env = env_shared();
    let home = tempfile::tempdir().unwrap();
    let endpoint = closed_port_url();
    let o = FetchOptions {
        hf_home: Some(home.path().to_path_buf()),
        endpoint: Some(endpoint.clone()),
        offline: Some(false),
        ..FetchOptions::default()
    };
    let (result, elapsed) = fetch_within(Duration::from_secs(5), REPO, COMMIT, &o);
    let err = result.unwrap_err();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(kind(&err), FetchErrorKind::Unreachable);
    let text = shown(&err);
    assert!(text.contains(&endpoint), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("--model-dir"), "{text}");
    assert!(text.contains("HF_HUB_OFFLINE=1"), "{text}");
    assert!(!repo_dir(home.path(), REPO).join("snapshots").exists());
}

#[test]
fn unresolvable_host_fails_within_the_resolve_timeout() {
    let _env = env_shared();
    let home = tempfile::tempdir().unwrap();
    // RFC 6761: .invalid never resolves. Whatever the resolver does, the wait is capped by
    // resolve_timeout.
    let o = FetchOptions {
        hf_home: Some(home.path().to_path_buf()),
        endpoint: Some("http://hub.neoprobe-test.invalid".into()),
        offline: Some(false),
        resolve_timeout: Duration::from_millis(500),
        ..FetchOptions::default()
    };
    let (result, elapsed) = fetch_within(Duration::from_secs(5), REPO, COMMIT, &o);
    let err = result.unwrap_err();
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert_eq!(kind(&err), FetchErrorKind::Unreachable);
    let text = shown(&err);
    assert!(text.contains("http://hub.neoprobe-test.invalid"), "{text}");
    assert!(text.contains("--model-dir"), "{text}");
}

#[test]
fn silent_server_times_out_instead_of_hanging() {
    let _env = env_shared();
    let home = tempfile::tempdir().unwrap();
    // Bound but never accepted: the kernel completes the handshake, then nothing is ever said.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let o = FetchOptions {
        hf_home: Some(home.path().to_path_buf()),
        endpoint: Some(endpoint.clone()),
        offline: Some(false),
        read_timeout: Duration::from_millis(300),
        ..FetchOptions::default()
    };
    let (result, elapsed) = fetch_within(Duration::from_secs(5), REPO, COMMIT, &o);
    let err = result.unwrap_err();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(kind(&err), FetchErrorKind::Unreachable);
    let text = shown(&err);
    assert!(text.contains("no answer within"), "{text}");
    assert!(text.contains(&endpoint), "{text}");
    drop(listener);
}

#[test]
fn unknown_repo_is_reported_as_not_found() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let err = fetch_model("test-org/no-such-model", COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::NotFound);
    let text = shown(&err);
    assert!(text.contains("\"test-org/no-such-model\" was not found"), "{text}");
    assert!(text.contains("check the model id"), "{text}");
    assert!(!repo_dir(home.path(), "test-org/no-such-model").join("snapshots").exists());
}

#[test]
fn unknown_repo_is_reported_as_not_found_by_a_mirror_without_error_codes() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    hub.set_faults(Faults { no_error_codes: true, ..Faults::default() });
    let home = tempfile::tempdir().unwrap();
    let o = FetchOptions {
        token: Some("hf_x".into()), // so the hub answers 404 rather than 401
        ..opts(&hub, home.path())
    };
    let err = fetch_model("test-org/no-such-model", COMMIT, &o, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::NotFound);
    let text = shown(&err);
    assert!(text.contains("was not found on the hub"), "{text}");
    assert!(text.contains("check the model id"), "{text}");
}

#[test]
fn unknown_revision_is_reported_as_not_found() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let err = fetch_model(REPO, "no-such-branch", &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::NotFound);
    let text = shown(&err);
    assert!(text.contains("revision \"no-such-branch\""), "{text}");
    assert!(text.contains("check the revision"), "{text}");
}

fn hub_without_tokenizer() -> FakeHub {
    let files = tiny_model_files().into_iter().filter(|f| f.name != "tokenizer.json").collect();
    FakeHub::start(vec![FakeRepo::new(REPO, files)])
}

#[test]
fn a_file_missing_from_the_repo_is_named() {
    let _env = env_shared();
    let hub = hub_without_tokenizer();
    let home = tempfile::tempdir().unwrap();
    let err = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::FileNotFound);
    let text = shown(&err);
    assert!(text.contains("no file \"tokenizer.json\""), "{text}");
    // The files that exist were cached; the snapshot is incomplete, so it is not returned
    // offline either.
    let offline = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    let err = fetch_model(REPO, COMMIT, &offline, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::NotCached);
    assert!(shown(&err).contains("missing: tokenizer.json"));
}

#[test]
fn a_file_missing_from_the_repo_is_named_by_a_mirror_without_error_codes() {
    let _env = env_shared();
    let hub = hub_without_tokenizer();
    hub.set_faults(Faults { no_error_codes: true, ..Faults::default() });
    let home = tempfile::tempdir().unwrap();
    let err = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::FileNotFound);
    assert!(shown(&err).contains("\"tokenizer.json\""));
    assert!(hub.seen().iter().any(|s| s.target.starts_with("/api/models/")));
}

fn weights_len(hub: &FakeHub) -> u64 {
    hub.repo(REPO).file("model.safetensors").bytes.len() as u64
}

/// Where a cut download of the weights is kept.
fn weights_partial(hub: &FakeHub, home: &Path) -> PathBuf {
    repo_dir(home, REPO).join("blobs").join(format!("{}.incomplete", weights_sha(hub)))
}

/// The `Range` header of each GET of the weights, in order.
fn lfs_ranges(hub: &FakeHub) -> Vec<Option<String>> {
    lfs_gets(hub).into_iter().map(|s| s.range).collect()
}

fn from(n: u64) -> Option<String> {
    Some(format!("bytes={n}-"))
}

/// Neither the snapshot nor the blobs show any of the weights.
fn assert_no_weights_in_place(hub: &FakeHub, home: &Path) {
    let repo = repo_dir(home, REPO);
    let pointer = repo.join("snapshots").join(COMMIT).join("model.safetensors");
    assert!(fs::symlink_metadata(&pointer).is_err(), "a partial file is visible in the snapshot");
    assert!(!repo.join("blobs").join(weights_sha(hub)).exists(), "a partial blob is in place");
}

#[test]
fn a_cut_transfer_is_resumed_within_the_same_fetch() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    hub.set_faults(Faults { cuts: vec![100_000], ..Faults::default() });
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_ranges(&hub), [None, from(100_000)], "did not resume where the cut left it");
    assert!(!weights_partial(&hub, home.path()).exists());
}

#[test]
fn a_transfer_cut_several_times_resumes_exactly_where_each_cut_left_it() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    hub.set_faults(Faults { cuts: vec![40_000, 60_000, 30_000], ..Faults::default() });
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_ranges(&hub), [None, from(40_000), from(100_000), from(130_000)]);
}

#[test]
fn a_transfer_cut_more_often_than_the_retries_completes_while_each_try_brings_bytes() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let o = opts(&hub, home.path());
    let cuts = 2 * o.retries as usize;
    hub.set_faults(Faults { cuts: vec![20_000; cuts], ..Faults::default() });
    let snapshot = fetch_model(REPO, COMMIT, &o, &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    let expected: Vec<_> =
        (0..=cuts as u64).map(|i| (i > 0).then(|| format!("bytes={}-", i * 20_000))).collect();
    assert_eq!(lfs_ranges(&hub), expected);
}

#[test]
fn a_transfer_that_stops_bringing_bytes_fails_after_its_retries_and_the_next_run_resumes() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    // The first response is cut after 100000 bytes, the 5 retries (the default) bring none.
    hub.set_faults(Faults { cuts: vec![100_000, 0, 0, 0, 0, 0], ..Faults::default() });
    let err = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::Interrupted);
    let text = shown(&err);
    let partial = weights_partial(&hub, home.path());
    for part in [
        "model.safetensors",
        "after 6 tries, the last 5 without new bytes",
        &format!("100000 of {} bytes are kept in {}", weights_len(&hub), partial.display()),
        "run again to resume from there",
    ] {
        assert!(text.contains(part), "no \"{part}\" in: {text}");
    }
    assert_eq!(lfs_ranges(&hub), [vec![None], vec![from(100_000); 5]].concat());
    assert_no_weights_in_place(&hub, home.path());
    assert_eq!(fs::metadata(&partial).unwrap().len(), 100_000);

    hub.reset_counts();
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_ranges(&hub), [from(100_000)], "the next run did not resume");
    assert!(!partial.exists());
}

#[test]
fn the_number_of_retries_is_an_option() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let o = FetchOptions { retries: 2, ..opts(&hub, home.path()) };
    hub.set_faults(Faults { cuts: vec![100_000, 0, 0], ..Faults::default() });
    let err = fetch_model(REPO, COMMIT, &o, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::Interrupted);
    assert!(shown(&err).contains("after 3 tries, the last 2 without new bytes"), "{err}");
    assert_eq!(lfs_gets(&hub).len(), 3);

    // Two retries without new bytes are allowed: the third try completes the file.
    hub.reset_counts();
    hub.set_faults(Faults { cuts: vec![0, 0], ..Faults::default() });
    let snapshot = fetch_model(REPO, COMMIT, &o, &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_ranges(&hub), vec![from(100_000); 3]);
}

#[test]
fn retries_wait_longer_each_time_no_bytes_arrive() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let wait = Duration::from_millis(40);
    let o = FetchOptions { retry_wait: wait, ..opts(&hub, home.path()) };
    hub.set_faults(Faults { cuts: vec![0, 0, 0], ..Faults::default() });
    let start = Instant::now();
    let snapshot = fetch_model(REPO, COMMIT, &o, &Silent).unwrap();
    let elapsed = start.elapsed();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_gets(&hub).len(), 4);
    // 40 + 80 + 160 ms: a fixed wait would take 120 ms.
    assert!(elapsed >= wait * 7, "took {elapsed:?}");
}

#[test]
fn a_stalled_transfer_times_out_and_is_resumed_within_the_same_fetch() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    hub.set_faults(Faults {
        stall_after: 50_000,
        stall_for: Duration::from_secs(3),
        stall_times: 1,
        ..Faults::default()
    });
    let o = FetchOptions { read_timeout: Duration::from_millis(300), ..opts(&hub, home.path()) };
    let (result, elapsed) = fetch_within(Duration::from_secs(10), REPO, COMMIT, &o);
    let snapshot = result.unwrap();
    // The read timeout ended the silent transfer, not the server closing it.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_ranges(&hub), [None, from(50_000)]);
}

#[test]
fn a_server_that_ignores_range_on_a_retry_restarts_the_file_cleanly() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    hub.set_faults(Faults { cuts: vec![70_000], ignore_range: true, ..Faults::default() });
    // The server answers the ranged retry with 200 and the whole file.
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_ranges(&hub), [None, from(70_000)]);
}

#[test]
fn a_partial_file_from_an_earlier_run_is_restarted_when_the_server_ignores_range() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let partial = weights_partial(&hub, home.path());
    fs::create_dir_all(partial.parent().unwrap()).unwrap();
    fs::write(&partial, vec![0xab; 70_000]).unwrap();
    hub.set_faults(Faults { ignore_range: true, ..Faults::default() });
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    // One request: the whole file replaced the partial one, rather than being appended to it
    // (which the hash check would catch, at the cost of a second download).
    assert_eq!(lfs_ranges(&hub), [from(70_000)]);
}

#[test]
fn a_wrong_part_from_the_download_server_is_an_error_not_retried() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    hub.set_faults(Faults { wrong_range: true, ..Faults::default() });
    let err = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::BadResponse);
    let text = shown(&err);
    assert!(text.contains("sent a wrong part of model.safetensors"), "{text}");
    // One request, and one from the start after the first wrong part; no retries.
    assert_eq!(lfs_ranges(&hub), [None, None]);
    assert_no_weights_in_place(&hub, home.path());
}

#[test]
fn a_bad_partial_file_from_an_earlier_run_is_downloaded_once_more_from_scratch() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let partial = weights_partial(&hub, home.path());
    fs::create_dir_all(partial.parent().unwrap()).unwrap();
    fs::write(&partial, vec![0xab; 1000]).unwrap();
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_ranges(&hub), [from(1000), None]);
}

#[test]
fn a_download_that_does_not_match_its_hash_is_discarded() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    hub.set_faults(Faults { corrupt_times: 1, ..Faults::default() });
    let err = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::Corrupt);
    let text = shown(&err);
    assert!(text.contains("model.safetensors"), "{text}");
    assert!(text.contains("sha256"), "{text}");
    // What this server sent is wrong: asking it again in the same run would not help.
    assert_eq!(lfs_gets(&hub).len(), 1);
    assert_no_weights_in_place(&hub, home.path());
    assert!(!weights_partial(&hub, home.path()).exists());

    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
}

#[test]
fn a_file_resumed_within_the_fetch_that_does_not_match_its_hash_is_discarded() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    // Cut once, then the resumed part has a flipped byte.
    hub.set_faults(Faults { cuts: vec![100_000], corrupt_times: 1, ..Faults::default() });
    let err = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::Corrupt);
    assert!(shown(&err).contains("sha256"), "{err}");
    assert_eq!(lfs_ranges(&hub), [None, from(100_000)]);
    assert_no_weights_in_place(&hub, home.path());
    assert!(!weights_partial(&hub, home.path()).exists());
}

#[test]
fn a_refusal_from_the_download_server_is_not_retried() {
    let _env = env_shared();
    for status in [403, 404] {
        let hub = FakeHub::tiny();
        let home = tempfile::tempdir().unwrap();
        hub.set_faults(Faults { statuses: vec![status; 6], ..Faults::default() });
        let err = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
        assert_eq!(kind(&err), FetchErrorKind::BadResponse, "{err}");
        let text = shown(&err);
        assert!(text.contains(&format!("answered HTTP {status}")), "{text}");
        assert!(text.contains(&hub.cdn_url), "{text}");
        assert_eq!(lfs_gets(&hub).len(), 1, "HTTP {status} was asked again");
        assert_no_weights_in_place(&hub, home.path());
    }
}

#[test]
fn a_busy_download_server_is_asked_again() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    hub.set_faults(Faults { statuses: vec![503, 429, 500], ..Faults::default() });
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_gets(&hub).len(), 4);
}

#[test]
fn a_download_server_that_stays_unavailable_fails_naming_the_tries() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    hub.set_faults(Faults { statuses: vec![503; 7], ..Faults::default() });
    let err = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::BadResponse);
    let text = shown(&err);
    assert!(text.contains("answered HTTP 503 to each of 6 tries"), "{text}");
    assert!(text.contains("run again later"), "{text}");
    assert_eq!(lfs_gets(&hub).len(), 6);
    assert_no_weights_in_place(&hub, home.path());
}

fn truncate_file(path: &Path, len: u64) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn a_truncated_blob_in_the_cache_is_refused_offline_and_downloaded_again_online() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    let blob = repo_dir(home.path(), REPO).join("blobs").join(weights_sha(&hub));
    let full = fs::metadata(&blob).unwrap().len();
    truncate_file(&blob, full / 2);

    let offline = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    let err = fetch_model(REPO, COMMIT, &offline, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::Corrupt);
    let text = shown(&err);
    assert!(text.contains("model.safetensors"), "{text}");
    assert!(text.contains("damaged"), "{text}");
    assert!(text.contains("--model-dir"), "{text}");

    hub.reset_counts();
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(lfs_gets(&hub).len(), 1, "the weights were not downloaded again");
    // Only the damaged file was asked about.
    assert!(hub.seen().iter().filter(|s| !s.cdn).all(|s| s.target.ends_with("/model.safetensors")));
}

#[test]
fn a_json_blob_with_garbage_appended_is_not_returned() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    let etag = hub.repo(REPO).file("config.json").etag();
    let blob = repo_dir(home.path(), REPO).join("blobs").join(etag);
    let mut bytes = fs::read(&blob).unwrap();
    bytes.extend_from_slice(b"{\"hidden_size\": 1");
    fs::write(&blob, bytes).unwrap();

    let offline = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    let err = fetch_model(REPO, COMMIT, &offline, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::Corrupt);
    assert!(shown(&err).contains("config.json"));
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
}

#[test]
fn a_same_length_bit_flip_is_caught_with_verify_cached() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    let blob = repo_dir(home.path(), REPO).join("blobs").join(weights_sha(&hub));
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // in the tensor data: the header still describes the file
    fs::write(&blob, bytes).unwrap();

    let deep_offline = FetchOptions { offline: Some(true), verify_cached: true, ..opts(&hub, home.path()) };
    let err = fetch_model(REPO, COMMIT, &deep_offline, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::Corrupt);
    assert!(shown(&err).contains("sha256"));

    let deep_online = FetchOptions { verify_cached: true, ..opts(&hub, home.path()) };
    let snapshot = fetch_model(REPO, COMMIT, &deep_online, &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
}

#[test]
fn a_partly_cached_snapshot_fetches_only_what_is_missing() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let snapshot = fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    fs::remove_file(snapshot.join("tokenizer.json")).unwrap();
    let etag = hub.repo(REPO).file("tokenizer.json").etag();
    fs::remove_file(repo_dir(home.path(), REPO).join("blobs").join(etag)).unwrap();
    hub.reset_counts();
    fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    let seen = hub.seen();
    assert!(seen.iter().all(|s| s.target.ends_with("/tokenizer.json")), "{seen:?}");
    assert_files_match(&hub, REPO, &snapshot);
}

#[test]
fn a_branch_is_resolved_once_and_then_found_through_refs() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let snapshot = fetch_model(REPO, "main", &opts(&hub, home.path()), &Silent).unwrap();
    assert!(snapshot.ends_with(COMMIT));
    let refs = repo_dir(home.path(), REPO).join("refs");
    assert_eq!(fs::read_to_string(refs.join("main")).unwrap(), COMMIT);
    // After the first request, the others name the commit, not the branch.
    let hub_requests: Vec<_> = hub.seen().into_iter().filter(|s| !s.cdn).collect();
    assert!(hub_requests[0].target.contains("/resolve/main/"));
    assert!(hub_requests[1..].iter().all(|s| s.target.contains(&format!("/resolve/{COMMIT}/"))));
    hub.reset_counts();
    let offline = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    assert_eq!(fetch_model(REPO, "main", &offline, &Silent).unwrap(), snapshot);
    assert_eq!(hub.connections(), 0);
}

#[test]
fn a_renamed_repo_is_followed_through_its_relative_redirect() {
    let _env = env_shared();
    let mut repo = FakeRepo::new(REPO, tiny_model_files());
    repo.renamed_from = vec!["old-org/tiny-model".into()];
    let hub = FakeHub::start(vec![repo]);
    let home = tempfile::tempdir().unwrap();
    let snapshot = fetch_model("old-org/tiny-model", COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    // Cached under the name asked for, as huggingface_hub does.
    assert!(snapshot.starts_with(repo_dir(home.path(), "old-org/tiny-model")));
    assert_files_match(&hub, REPO, &snapshot);
}

#[test]
fn the_token_goes_to_the_hub_but_not_to_the_cdn() {
    let _env = env_shared();
    let mut repo = FakeRepo::new(REPO, tiny_model_files());
    repo.token = Some("hf_secret".into());
    let hub = FakeHub::start(vec![repo]);
    let home = tempfile::tempdir().unwrap();

    // Without a token (`Some("")` sends none) the private repo looks like a missing one, as on
    // the hub.
    let anonymous = FetchOptions { token: Some(String::new()), ..opts(&hub, home.path()) };
    let err = fetch_model(REPO, COMMIT, &anonymous, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::NotFound);
    assert!(hub.seen().iter().all(|s| s.authorization.is_none()));

    let with_token = FetchOptions { token: Some("hf_secret".into()), ..opts(&hub, home.path()) };
    hub.reset_counts();
    let snapshot = fetch_model(REPO, COMMIT, &with_token, &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    let seen = hub.seen();
    assert!(seen.iter().filter(|s| !s.cdn).all(|s| s.authorization.as_deref() == Some("Bearer hf_secret")));
    assert!(seen.iter().any(|s| s.cdn));
    assert!(seen.iter().filter(|s| s.cdn).all(|s| s.authorization.is_none()));
}

#[test]
fn malformed_model_ids_are_rejected_without_a_request() {
    let _env = env_shared();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    for id in ["../etc", "a/b/c", "", "org/na me", "org/-x"] {
        let err = fetch_model(id, COMMIT, &opts(&hub, home.path()), &Silent).unwrap_err();
        assert_eq!(kind(&err), FetchErrorKind::InvalidInput, "{id}");
    }
    for rev in ["", "../x", "a//b"] {
        let err = fetch_model(REPO, rev, &opts(&hub, home.path()), &Silent).unwrap_err();
        assert_eq!(kind(&err), FetchErrorKind::InvalidInput, "{rev}");
    }
    assert_eq!(hub.connections(), 0);
}

#[test]
fn the_hf_hub_crate_and_neoprobe_share_one_cache() {
    let _env = env_shared();
    let hub = FakeHub::tiny();

    // hf-hub 0.5 downloads from the fake hub (so the fake speaks what hf-hub reads) ...
    let home = tempfile::tempdir().unwrap();
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(home.path().join("hub")))
        .with_endpoint(hub.url.clone())
        .with_progress(false)
        .build()
        .unwrap()
        .repo(hf_hub::Repo::with_revision(REPO.into(), hf_hub::RepoType::Model, COMMIT.into()));
    for name in MODEL_FILES {
        api.download(name).unwrap();
    }
    // ... and neoprobe finds its files offline.
    hub.reset_counts();
    let offline = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    let snapshot = fetch_model(REPO, COMMIT, &offline, &Silent).unwrap();
    assert_files_match(&hub, REPO, &snapshot);
    assert_eq!(hub.connections(), 0);

    // The other way round: what neoprobe fetched, hf-hub's cache lookup finds.
    let home = tempfile::tempdir().unwrap();
    fetch_model(REPO, COMMIT, &opts(&hub, home.path()), &Silent).unwrap();
    let cache = hf_hub::Cache::new(home.path().join("hub")).repo(hf_hub::Repo::with_revision(
        REPO.into(),
        hf_hub::RepoType::Model,
        COMMIT.into(),
    ));
    for name in MODEL_FILES {
        let path = cache.get(name).unwrap_or_else(|| panic!("hf-hub does not find {name}"));
        assert_eq!(fs::read(path).unwrap(), hub.repo(REPO).file(name).bytes);
    }
}

/// Restores the environment variables it changed when dropped.
struct EnvGuard(Vec<(&'static str, Option<String>)>);

impl EnvGuard {
    fn set(&mut self, key: &'static str, value: Option<&str>) {
        self.0.push((key, std::env::var(key).ok()));
        match value {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (key, old) in self.0.drain(..).rev() {
            match old {
                Some(v) => std::env::set_var(key, v),
                None => std::env::remove_var(key),
            }
        }
    }
}

#[test]
fn the_environment_variables_are_honoured() {
    let _env = env_exclusive();
    let hub = FakeHub::tiny();
    let home = tempfile::tempdir().unwrap();
    let mut env = EnvGuard(Vec::new());
    env.set("HF_HOME", Some(home.path().to_str().unwrap()));
    env.set("HF_HUB_CACHE", None);
    env.set("HF_ENDPOINT", Some(&hub.url));
    env.set("HF_TOKEN", Some("hf_from_env"));
    env.set("HF_HUB_OFFLINE", None);

    let snapshot = fetch_model(REPO, COMMIT, &FetchOptions::default(), &Silent).unwrap();
    assert_eq!(snapshot, repo_dir(home.path(), REPO).join("snapshots").join(COMMIT));
    assert_files_match(&hub, REPO, &snapshot);
    assert!(hub
        .seen()
        .iter()
        .filter(|s| !s.cdn)
        .all(|s| s.authorization.as_deref() == Some("Bearer hf_from_env")));

    // HF_HUB_OFFLINE=1: the cached files are returned, an empty cache fails fast.
    env.set("HF_HUB_OFFLINE", Some("1"));
    hub.reset_counts();
    assert_eq!(fetch_model(REPO, COMMIT, &FetchOptions::default(), &Silent).unwrap(), snapshot);
    let empty = tempfile::tempdir().unwrap();
    env.set("HF_HOME", Some(empty.path().to_str().unwrap()));
    let start = Instant::now();
    let err = fetch_model(REPO, COMMIT, &FetchOptions::default(), &Silent).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(kind(&err), FetchErrorKind::NotCached);
    assert!(shown(&err).contains(&empty.path().join("hub").display().to_string()));
    assert_eq!(hub.connections(), 0);

    // An explicit option beats the environment.
    let forced_online = FetchOptions { offline: Some(false), ..FetchOptions::default() };
    fetch_model(REPO, COMMIT, &forced_online, &Silent).unwrap();
    assert!(hub.connections() > 0);
}

#[test]
fn concurrent_fetches_into_one_cache_all_get_the_right_files() {
    let _env = env_shared();
    let hub = std::sync::Arc::new(FakeHub::tiny());
    let home = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let o = opts(&hub, home.path());
            std::thread::spawn(move || fetch_model(REPO, COMMIT, &o, &Silent))
        })
        .collect();
    for t in threads {
        let snapshot = t.join().unwrap().unwrap();
        assert_files_match(&hub, REPO, &snapshot);
    }
    let blobs = repo_dir(home.path(), REPO).join("blobs");
    let names: Vec<String> = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // The per-blob locks live where Python's huggingface_hub puts them.
    let weights_lock = home
        .path()
        .join("hub/.locks/models--test-org--tiny-model")
        .join(format!("{}.lock", weights_sha(&hub)));
    assert!(weights_lock.exists());
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints and pickle-only repos.

const SHARDED: &str = "test-org/tiny-sharded";
const SHARDS: [&str; 3] = [
    "model-00001-of-00003.safetensors",
    "model-00002-of-00003.safetensors",
    "model-00003-of-00003.safetensors",
];

fn sharded_hub() -> FakeHub {
    FakeHub::start(vec![FakeRepo::new(SHARDED, fixture_files(3))])
}

/// Every tensor of `w` as bytes, in a fixed order.
fn weight_bytes(w: &GptNeoWeights) -> Vec<Vec<u8>> {
    let mut all = vec![w.wte.bytes().to_vec(), w.wpe.bytes().to_vec()];
    for b in &w.blocks {
        for t in [
            &b.ln_1.weight,
            &b.ln_1.bias,
            &b.q_proj,
            &b.k_proj,
            &b.v_proj,
            &b.out_proj.weight,
            &b.out_proj.bias,
            &b.ln_2.weight,
            &b.ln_2.bias,
            &b.c_fc.weight,
            &b.c_fc.bias,
            &b.c_proj.weight,
            &b.c_proj.bias,
        ] {
            all.push(t.bytes().to_vec());
        }
    }
    let ln_f = w.ln_f.as_ref().expect("every block is loaded");
    all.extend([ln_f.weight.bytes().to_vec(), ln_f.bias.bytes().to_vec()]);
    all
}

/// The weights' identity and every tensor of the model folder `dir`.
fn load_all(dir: &Path) -> (String, Vec<Vec<u8>>) {
    let dir = ModelDir::open(dir).unwrap();
    let config = dir.config().unwrap();
    let weights = dir.weights_of_blocks(&config, config.num_layers).unwrap();
    (dir.weights_sha256().unwrap(), weight_bytes(&weights))
}

#[test]
fn a_sharded_repo_is_fetched_into_the_standard_layout_and_loads_the_single_files_weights() {
    let _env = env_shared();
    let hub = sharded_hub();
    let home = tempfile::tempdir().unwrap();
    let snapshot = fetch_model(SHARDED, "main", &opts(&hub, home.path()), &Silent).unwrap();
    let repo = repo_dir(home.path(), SHARDED);
    assert_eq!(snapshot, repo.join("snapshots").join(COMMIT));
    assert_eq!(fs::read_to_string(repo.join("refs").join("main")).unwrap(), COMMIT);
    let served = &hub.repo(SHARDED).files;
    for file in served {
        let etag = file.etag();
        assert_eq!(fs::read(repo.join("blobs").join(&etag)).unwrap(), file.bytes, "{}", file.name);
        let link = fs::read_link(snapshot.join(&file.name)).unwrap();
        assert_eq!(link, Path::new("../../blobs").join(&etag), "{}", file.name);
    }
    let mut in_snapshot: Vec<String> = fs::read_dir(&snapshot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    in_snapshot.sort();
    let mut expected: Vec<String> = served.iter().map(|f| f.name.clone()).collect();
    expected.sort();
    assert_eq!(in_snapshot, expected, "the snapshot holds exactly the repo's files");
    assert!(
        expected.iter().any(|n| n == "model.safetensors.index.json")
            && expected.len() == 2 + 1 + SHARDS.len()
    );
    // The three shards and the tokenizer came from the CDN.
    assert_eq!(lfs_gets(&hub).len(), SHARDS.len() + 1);

    let (sharded_id, sharded) = load_all(&snapshot);
    let (single_id, single) = load_all(Path::new(TINY));
    assert_eq!(sharded.len(), single.len());
    assert!(sharded == single, "the shards load to other weights than the single file");
    // The identity: one file's sha256; for shards, that of sha256sum's lines for the index and
    // the shards in name order.
    assert_eq!(single_id, sha256_hex(&fs::read(Path::new(TINY).join("model.safetensors")).unwrap()));
    let lines: String = ["model.safetensors.index.json"]
        .into_iter()
        .chain(SHARDS)
        .map(|name| format!("{}  {name}\n", sha256_hex(&hub.repo(SHARDED).file(name).bytes)))
        .collect();
    assert_eq!(sharded_id, sha256_hex(lines.as_bytes()));
}

#[test]
fn a_sharded_snapshot_is_used_offline_and_only_its_lost_or_damaged_shards_are_fetched_again() {
    let _env = env_shared();
    let hub = sharded_hub();
    let home = tempfile::tempdir().unwrap();
    let snapshot = fetch_model(SHARDED, "main", &opts(&hub, home.path()), &Silent).unwrap();
    hub.reset_counts();
    let offline = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    assert_eq!(fetch_model(SHARDED, "main", &offline, &Silent).unwrap(), snapshot);
    assert_eq!(hub.connections(), 0);

    // A lost shard: reported missing offline.
    let blobs = repo_dir(home.path(), SHARDED).join("blobs");
    let lost = hub.repo(SHARDED).file(SHARDS[1]);
    fs::remove_file(snapshot.join(SHARDS[1])).unwrap();
    fs::remove_file(blobs.join(lost.etag())).unwrap();
    let err = fetch_model(SHARDED, "main", &offline, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::NotCached);
    assert!(shown(&err).contains(&format!("missing: {}", SHARDS[1])), "{err}");
    // A damaged one: refused offline, named.
    let damaged = blobs.join(hub.repo(SHARDED).file(SHARDS[2]).etag());
    truncate_file(&damaged, fs::metadata(&damaged).unwrap().len() - 1);
    let err = fetch_model(SHARDED, "main", &offline, &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::Corrupt);
    assert!(shown(&err).contains(SHARDS[2]), "{err}");

    // Online, those two shards and nothing else are asked for.
    hub.reset_counts();
    assert_eq!(fetch_model(SHARDED, "main", &opts(&hub, home.path()), &Silent).unwrap(), snapshot);
    let asked: Vec<String> = hub.seen().into_iter().filter(|s| !s.cdn).map(|s| s.target).collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].ends_with(SHARDS[1]) && asked[1].ends_with(SHARDS[2]), "{asked:?}");
    assert_eq!(lfs_gets(&hub).len(), 2);
    assert_eq!(load_all(&snapshot).1, load_all(Path::new(TINY)).1);
}

#[test]
fn a_shard_the_index_names_but_the_repo_lacks_is_named() {
    let _env = env_shared();
    let files =
        fixture_files(2).into_iter().filter(|f| f.name != "model-00002-of-00002.safetensors").collect();
    let hub = FakeHub::start(vec![FakeRepo::new(SHARDED, files)]);
    let home = tempfile::tempdir().unwrap();
    let err = fetch_model(SHARDED, "main", &opts(&hub, home.path()), &Silent).unwrap_err();
    assert_eq!(kind(&err), FetchErrorKind::FileNotFound);
    let text = shown(&err);
    assert!(text.contains("no file \"model-00002-of-00002.safetensors\""), "{text}");
    assert!(text.contains("names that shard"), "{text}");
}

const PICKLED: &str = "test-org/tiny-pickled";
/// The head of the hub's conversion of [`COMMIT`].
const CONVERTED: &str = "5afe7e0505afe7e0505afe7e0505afe7e0505afe";
const OLD_COMMIT: &str = "01d0000000000000000000000000000000000001";

/// Pull requests and discussions that are not the conversion of [`COMMIT`]: a discussion, a
/// newer pull request by the bot with another title, the conversion title from someone else, a
/// closed conversion, a conversion of an older commit.
fn decoy_discussions() -> Vec<FakeDiscussion> {
    let mut question =
        FakeDiscussion::pull_request(1, "Which tokenizer?", "someone", OLD_COMMIT, OLD_COMMIT, Vec::new());
    question.is_pull_request = false;
    let mut closed = FakeDiscussion::pull_request(
        3,
        CONVERSION_TITLE,
        CONVERSION_BOT,
        "c105ed0000000000000000000000000000000003",
        COMMIT,
        converted_files(3),
    );
    closed.status = "closed".into();
    let other_title = FakeDiscussion::pull_request(
        6,
        "Update config.json",
        CONVERSION_BOT,
        "0c0f160000000000000000000000000000000006",
        COMMIT,
        converted_files(6),
    );
    vec![
        question,
        other_title,
        FakeDiscussion::pull_request(
            2,
            CONVERSION_TITLE,
            "mallory",
            "bad0000000000000000000000000000000000002",
            COMMIT,
            converted_files(2),
        ),
        closed,
        FakeDiscussion::pull_request(
            4,
            CONVERSION_TITLE,
            CONVERSION_BOT,
            "01dc000000000000000000000000000000000004",
            OLD_COMMIT,
            converted_files(4),
        ),
    ]
}

/// No request downloaded a pickle, or anything under its name.
fn assert_no_pickle_downloaded(hub: &FakeHub) {
    let pickle_shas: Vec<String> =
        ["pytorch_model.bin", "pytorch_model.bin.index.json"].iter().map(|p| pickle_file(p).etag()).collect();
    for s in hub.seen() {
        assert!(!(s.cdn && pickle_shas.iter().any(|sha| s.target.contains(sha.as_str()))), "{s:?}");
        assert!(!(s.method == "GET" && s.target.contains("pytorch_model")), "{s:?}");
    }
}

#[test]
fn a_pickle_only_revision_is_fetched_from_the_hubs_safetensors_conversion_with_a_warning() {
    let _env = env_shared();
    let mut repo = FakeRepo::new(PICKLED, pickled_files(&["pytorch_model.bin"]));
    repo.discussions = decoy_discussions();
    repo.discussions.push(FakeDiscussion::pull_request(
        5,
        CONVERSION_TITLE,
        CONVERSION_BOT,
        CONVERTED,
        COMMIT,
        converted_files(0),
    ));
    let hub = FakeHub::start(vec![repo]);
    let home = tempfile::tempdir().unwrap();
    let notes = Recorded::default();
    let snapshot = fetch_model(PICKLED, "main", &opts(&hub, home.path()), &notes).unwrap();
    let dir = repo_dir(home.path(), PICKLED);
    assert_eq!(snapshot, dir.join("snapshots").join(CONVERTED));
    let pr = hub.repo(PICKLED).discussions.iter().find(|d| d.num == 5).unwrap();
    for name in MODEL_FILES {
        let served = &pr.files.iter().find(|f| f.name == name).unwrap().bytes;
        assert!(fs::read(snapshot.join(name)).unwrap() == *served, "{name} is not the conversion's");
    }
    assert!(!snapshot.join("pytorch_model.bin").exists());
    assert_no_pickle_downloaded(&hub);
    // The open pull requests were read page by page.
    assert!(hub.seen().iter().any(|s| s.target.contains("/discussions?p=1")), "{:?}", hub.seen());
    // The revision still names its own commit; the pull request's ref names its head.
    assert_eq!(fs::read_to_string(dir.join("refs/main")).unwrap(), COMMIT);
    assert_eq!(fs::read_to_string(dir.join("refs/refs/pr/5")).unwrap(), CONVERTED);
    let warnings = notes.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    for part in ["pytorch_model.bin", "pull request #5", "refs/pr/5", CONVERTED, CONVERSION_BOT, "--revision"]
    {
        assert!(warnings[0].contains(part), "no \"{part}\" in: {}", warnings[0]);
    }

    // Offline, the pull request's commit (as the warning says to pin) is found in the cache.
    hub.reset_counts();
    let offline = FetchOptions { offline: Some(true), ..opts(&hub, home.path()) };
    assert_eq!(fetch_model(PICKLED, CONVERTED, &offline, &Silent).unwrap(), snapshot);
    assert_eq!(hub.connections(), 0);
    // Online again, the lookup is repeated but nothing is downloaded again, and it warns again.
    let notes = Recorded::default();
    assert_eq!(fetch_model(PICKLED, "main", &opts(&hub, home.path()), &notes).unwrap(), snapshot);
    assert!(lfs_gets(&hub).is_empty());
    assert_eq!(notes.warnings().len(), 1);
}

#[test]
fn a_pickle_only_revision_without_a_conversion_is_refused_with_what_to_do() {
    let _env = env_shared();
    for pickles in
        [&["pytorch_model.bin"][..], &["pytorch_model.bin.index.json", "pytorch_model-00001-of-00001.bin"]]
    {
        let mut repo = FakeRepo::new(PICKLED, pickled_files(pickles));
        repo.discussions = decoy_discussions();
        let hub = FakeHub::start(vec![repo]);
        let home = tempfile::tempdir().unwrap();
        let err = fetch_model(PICKLED, "main", &opts(&hub, home.path()), &Silent).unwrap_err();
        assert_eq!(kind(&err), FetchErrorKind::FileNotFound);
        assert_eq!(neoprobe::error::kind_of(&err), neoprobe::error::Kind::NotFound);
        let text = shown(&err);
        for part in [
            &format!("has only {}", pickles[0])[..],
            COMMIT,
            CONVERSION_BOT,
            "does not unpickle",
            "save_pretrained(DIR, safe_serialization=True)",
            "--model-dir DIR",
        ] {
            assert!(text.contains(part), "no \"{part}\" in: {text}");
        }
        assert_no_pickle_downloaded(&hub);
        assert!(!repo_dir(home.path(), PICKLED).join("snapshots").join(CONVERTED).exists());
    }
}
