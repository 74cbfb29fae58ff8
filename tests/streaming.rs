//! Streamed batches against one batch: the rows of any input split into GPU batches of any size
//! are bit for bit the rows of one packed batch holding everything, on every kernel variant; and
//! `extract` / `challenge` write byte-identical files whatever `--batch-tokens` is.

mod common;

use common::engine;
use neoprobe::batching::Streamer;
use neoprobe::engine::LoadedModel;
use neoprobe::kernels::Variant;
use neoprobe::model::{Batch, Hook, HookPlan, HookPoint, ModelDir};
use neoprobe::notes::{Bar, Interrupted, NoBar, Notes, Silent, Unit};
use std::path::Path;
use std::process::Command;

const TINY: &str = "fixtures/tiny-neo";

/// The 200 fixture words as written, and the fixture text cut into sequences of 1 to 40 tokens
/// (longer than the tiny model's attention window of 8, so local attention is exercised).
fn sequences(model: &LoadedModel) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for list in ["data/verbs.txt", "data/nouns.txt"] {
        for word in std::fs::read_to_string(list).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            out.push(model.tokenizer.encode_word(word.trim(), false).unwrap());
        }
    }
    let text = model.tokenizer.encode(&std::fs::read_to_string("fixtures/text.txt").unwrap()).unwrap();
    let mut rest = &text[..];
    let mut len = 1;
    while !rest.is_empty() {
        let take = len.min(rest.len());
        out.push(rest[..take].to_vec());
        rest = &rest[take..];
        len = len % 40 + 13;
    }
    out
}

crate::test_each_variant!(batches_of_any_size_give_the_rows_of_one_batch);

fn batches_of_any_size_give_the_rows_of_one_batch(variant: Variant) {
    let dir = ModelDir::open(Path::new(TINY)).unwrap();
    let hooks = [Hook::block(7, HookPoint::AttnZ), Hook::block(8, HookPoint::MlpPre)];
    let (model, plan) = LoadedModel::load(&dir, |_| HookPlan::new(&hooks)).unwrap();
    let engine = engine(&model.weights, variant);
    let sequences = sequences(&model);
    let one = Batch::pack(&sequences, model.config.max_position_embeddings).unwrap();
    let (whole, _) = engine.forward(&one, &plan, false).unwrap();
    let longest = sequences.iter().map(Vec::len).max().unwrap();
    for hook in hooks {
        let expected = whole.get(hook).unwrap();
        // One batch per sequence or nearly, odd sizes that cut anywhere, and all in one.
        for batch_tokens in [longest, 97, 256, one.n_tokens()] {
            let streamer = streamer(&engine, &plan, hook, batch_tokens, &Silent);
            let mut rows = Vec::new();
            let mut next_sequence = 0;
            let stats = streamer
                .run(sequences.iter().cloned().map(Ok), &|i| format!("sequence {i}"), |batch, first, r| {
                    assert_eq!(first, next_sequence, "batches arrive in order");
                    assert!(batch.n_tokens() <= batch_tokens);
                    next_sequence += batch.n_sequences();
                    rows.extend(r);
                    Ok(())
                })
                .unwrap();
            assert_eq!(stats.tokens, one.n_tokens());
            assert_eq!(stats.sequences, sequences.len());
            if batch_tokens < one.n_tokens() {
                assert!(stats.batches > 1, "{batch_tokens} tokens per batch made one batch");
            }
            let same = rows.len() == expected.len()
                && rows.iter().zip(expected).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{variant} {hook}: batches of {batch_tokens} tokens differ from one batch");
        }
    }
}

#[test]
fn a_sequence_longer_than_a_batch_is_an_error_naming_it() {
    let dir = ModelDir::open(Path::new(TINY)).unwrap();
    let hook = Hook::block(8, HookPoint::MlpPre);
    let (model, plan) = LoadedModel::load(&dir, |_| HookPlan::new(&[hook])).unwrap();
    let engine = engine(&model.weights, Variant::Cpu);
    let streamer = streamer(&engine, &plan, hook, 4, &Silent);
    let sequences = vec![vec![1, 2], vec![3, 4, 5, 6, 7], vec![8]];
    let mut called = 0;
    let err = streamer
        .run(sequences.into_iter().map(Ok), &|i| format!("word {i}"), |_, _, _| {
            called += 1;
            Ok(())
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("word 1 has 5 tokens, more than a batch holds (4 tokens)"), "{err}");
    assert_eq!(called, 0, "the batch before the long sequence is not run either: it fails first");
}

fn neoprobe(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_neoprobe")).args(args).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn extract_and_challenge_files_do_not_depend_on_the_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let words = dir.path().join("words.txt");
    let all = std::fs::read_to_string("data/verbs.txt").unwrap()
        + &std::fs::read_to_string("data/nouns.txt").unwrap();
    std::fs::write(&words, all).unwrap();
    for (ext, pool) in [("npy", "mean"), ("safetensors", "none")] {
        let mut files = Vec::new();
        for batch in ["5", "64", "100000000"] {
            let out = dir.path().join(format!("{pool}-{batch}.{ext}"));
            let (ok, stderr) = neoprobe(&[
                "extract",
                "--model-dir",
                TINY,
                "--words",
                words.to_str().unwrap(),
                "--pool",
                pool,
                "--batch-tokens",
                batch,
                "--out",
                out.to_str().unwrap(),
            ]);
            if batch == "100000000" {
                // More than the adapter holds for this model: refused, nothing written.
                assert!(!ok && stderr.contains("--batch-tokens 100000000 is more than"), "{stderr}");
                assert!(!out.exists());
                continue;
            }
            assert!(ok, "{stderr}");
            files.push(std::fs::read(&out).unwrap());
        }
        assert_eq!(files.len(), 2);
        assert!(files[0] == files[1], "{pool} .{ext}: batches of 5 and 64 tokens wrote different files");
    }

    let mut arrays = Vec::new();
    for batch in ["3", "1000"] {
        let out = dir.path().join(format!("challenge-{batch}"));
        let (ok, stderr) = neoprobe(&[
            "challenge",
            "--model-dir",
            TINY,
            "--permutations",
            "0",
            "--batch-tokens",
            batch,
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        arrays.push(std::fs::read(out.join("activations.npy")).unwrap());
    }
    assert!(arrays[0] == arrays[1], "the challenge's activations depend on the batch size");
}

fn streamer<'a>(
    engine: &'a neoprobe::engine::Engine,
    plan: &'a HookPlan,
    hook: Hook,
    batch_tokens: usize,
    notes: &'a dyn Notes,
) -> Streamer<'a> {
    Streamer { engine, plan, hook, batch_tokens, notes, label: "test", total_tokens: 0, resume: None }
}

/// Asks to stop once the first batch has been handed over, as Ctrl-C in Python does.
struct StopAfterFirstBatch(std::sync::atomic::AtomicBool);

impl Notes for StopAfterFirstBatch {
    fn step(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn bar(&self, _: &str, _: Option<u64>, _: u64, _: Unit) -> Box<dyn Bar + '_> {
        Box::new(NoBar)
    }
    fn interrupted(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn an_interrupt_stops_the_run_between_batches() {
    let dir = ModelDir::open(Path::new(TINY)).unwrap();
    let hook = Hook::block(1, HookPoint::MlpPre);
    let (model, plan) = LoadedModel::load(&dir, |_| HookPlan::new(&[hook])).unwrap();
    let engine = engine(&model.weights, Variant::Cpu);
    let stop = StopAfterFirstBatch(std::sync::atomic::AtomicBool::new(false));
    let streamer = streamer(&engine, &plan, hook, 2, &stop);
    let sequences = vec![vec![1, 2], vec![3, 4], vec![5]];
    let mut called = 0;
    let err = streamer
        .run(sequences.into_iter().map(Ok), &|i| format!("word {i}"), |_, _, _| {
            called += 1;
            stop.0.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .unwrap_err();
    assert!(err.downcast_ref::<Interrupted>().is_some(), "{err:#}");
    assert_eq!(called, 1, "the batch after the interrupt does not run");
}
