"""Bad input raises the exception its kind calls for, with the message the CLI prints after
`error: `: a missing model folder or file → FileNotFoundError; a bad hook, pattern, block, neuron,
pooling or argument → ValueError; a panic → RuntimeError("internal error: …")."""

import os
import shutil

import pytest

import neoprobe
from conftest import TINY, VERBS, cli_error, words_of


def test_a_missing_model_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError) as raised:
        neoprobe.Model.from_dir(missing)
    assert str(raised.value) == cli_error("extract", "--model-dir", missing, "--words", VERBS, "--out", tmp_path / "a.npy")


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_a_model_folder_missing_a_file(tmp_path, missing):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if name != missing:
            os.symlink(TINY.resolve() / name, folder / name)
    with pytest.raises(FileNotFoundError) as raised:
        neoprobe.Model.from_dir(folder)
    assert str(raised.value) == cli_error("extract", "--model-dir", folder, "--words", VERBS, "--out", tmp_path / "a.npy")


@pytest.mark.parametrize(
    "hook",
    ["blocks.8.mlp.hook_middle", "blocks.*.mlp.hook_middle", "blocks.12.mlp.hook_pre", "transformer.h.99.mlp.c_fc"],
)
def test_a_bad_hook_pattern_or_block(model, tmp_path, hook):
    with pytest.raises(ValueError) as raised:
        model.run_with_cache(words_of(VERBS), names=[hook])
    assert str(raised.value) == cli_error(
        "extract", "--model-dir", TINY, "--words", VERBS, "--hook", hook, "--out", tmp_path / "a.npy"
    )


def test_max_pooling_of_the_logits(model, tmp_path):
    with pytest.raises(ValueError) as raised:
        model.run_with_cache(words_of(VERBS), names=["logits"], pool="max", return_type=None)
    assert str(raised.value) == cli_error(
        "extract", "--model-dir", TINY, "--words", VERBS, "--hook", "logits", "--pool", "max", "--out", tmp_path / "a.npy"
    )


def test_a_bad_batch_size(tmp_path):
    with pytest.raises(ValueError) as raised:
        neoprobe.Model.from_dir(TINY, batch_tokens=0)
    assert str(raised.value) == cli_error(
        "extract", "--model-dir", TINY, "--words", VERBS, "--batch-tokens", "0", "--out", tmp_path / "a.npy"
    )


def test_a_bad_layer_for_the_challenge(model, tmp_path):
    with pytest.raises(ValueError) as raised:
        model.challenge(tmp_path / "py", layer=12)
    assert str(raised.value) == cli_error("challenge", "--model-dir", TINY, "--layer", "12", "--out-dir", tmp_path / "py")
    assert not (tmp_path / "py").exists() or not any((tmp_path / "py").iterdir()), "nothing written"


def test_a_bad_neuron_for_explain(model, tmp_path):
    with pytest.raises(ValueError) as raised:
        model.explain("dog", neuron=model.cfg.d_mlp, out_dir=tmp_path / "py")
    assert str(raised.value) == cli_error(
        "explain", "--model-dir", TINY, "--word", "dog", "--neuron", str(model.cfg.d_mlp), "--out-dir", tmp_path / "cli"
    ).replace(str(tmp_path / "cli"), str(tmp_path / "py"))


def test_a_bad_hook_for_the_vocabulary_sweep(model, tmp_path):
    with pytest.raises(ValueError) as raised:
        model.sweep_vocab(tmp_path / "py", hook="blocks.8.mlp.hook_middle")
    assert str(raised.value) == cli_error(
        "sweep", "vocab", "--model-dir", TINY, "--hook", "blocks.8.mlp.hook_middle", "--out-dir", tmp_path / "py"
    )


def test_an_output_folder_that_holds_files(model, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError) as raised:
        model.challenge(tmp_path / "full")
    assert str(raised.value) == cli_error("challenge", "--model-dir", TINY, "--out-dir", tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_a_model_not_in_the_offline_cache(offline_hub, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(RuntimeError) as raised:
        neoprobe.Model.from_pretrained("test-org/not-cached", revision=commit)
    env = dict(os.environ)
    assert str(raised.value) == cli_error(
        "extract", "--model", "test-org/not-cached", "--revision", commit, "--words", VERBS, "--out", tmp_path / "a.npy", env=env
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.run_with_cache("dog", pool="average"), 'pool "average" is not one of mean, first, last, max, none'),
        (lambda m: m.run_with_cache("dog", return_type="loss"), 'return_type "loss" is not one of'),
        (lambda m: m.run_with_cache([]), "inputs is empty"),
        (lambda m: m.run_with_cache(["dog", 3]), "mixes str and token ids"),
        (lambda m: m.run_with_cache([[1, 2], [-3]]), "negative id"),
        (lambda m: m.run_with_cache([[1, 2], [50257]]), "token id 50257 in sequence 1 is not in the vocabulary"),
        (lambda m: m.run_with_cache(""), "the text gives no tokens"),
        (lambda m: m.run_with_cache(["dog", " "]), "word 1 of the list is empty"),
        (lambda m: m.run_with_cache("dog", names=[], return_type=None), "no hook requested"),
        (lambda m: m.to_str_tokens([50257]), "token id 50257 is not in the vocabulary"),
    ],
)
def test_bad_arguments(model, call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call(model)


def test_a_bad_kernel_variant():
    with pytest.raises(ValueError, match='kernel_variant "fast" is not one of simple, cpu, tiled'):
        neoprobe.Model.from_dir(TINY, kernel_variant="fast")


def test_a_panic_is_a_runtime_error_not_a_crash():
    with pytest.raises(RuntimeError, match="^internal error: a deliberate panic$"):
        neoprobe._native.raise_panic_for_tests(neoprobe._Notes())
