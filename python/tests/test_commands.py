"""challenge, explain, trace, sweep_vocab and verify from Python: the same values as the CLI's
runs of the same commands, returned as numpy arrays and the commands' --json dicts."""

import csv
import json
import tempfile

import numpy as np
import pytest

import neoprobe
from conftest import TINY, VERBS, assert_bit_identical, cli_ok


def test_challenge_equals_the_cli(model, tmp_path):
    cli = json.loads(cli_ok("challenge", "--model-dir", TINY, "--out-dir", tmp_path / "cli", "--json").stdout)
    res = model.challenge(tmp_path / "py")
    assert res.out_dir == str(tmp_path / "py")
    assert sorted(p.split("/")[-1] for p in res.files) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert res.activations.shape == (2, 100, model.cfg.d_mlp)
    assert_bit_identical(res.activations, np.load(tmp_path / "cli" / "activations.npy"), "activations")
    with open(tmp_path / "cli" / "neurons.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert list(res.neurons) == rows[0], "the CSV's columns in its order"
    assert res.neurons["neuron"].dtype == np.int64
    assert res.neurons["neuron"].tolist() == list(range(model.cfg.d_mlp))
    for i, column in enumerate(rows[0][1:], start=1):
        np.testing.assert_array_equal(res.neurons[column], np.array([float(r[i]) for r in rows[1:]]), column)
    volatile = {"seconds", "files", "model"}
    assert {k: v for k, v in res.summary.items() if k not in volatile} == {
        k: v for k, v in cli.items() if k not in volatile
    }
    assert res.summary["bonferroni_count"] == cli["bonferroni_count"]


def test_challenge_into_a_temporary_folder_with_categories(model, tmp_path):
    (tmp_path / "a.txt").write_text("run\nwalk\njump\nsing\n")
    (tmp_path / "b.txt").write_text("dog\ncat\ntree\nhouse\n")
    res = model.challenge(categories={"actions": tmp_path / "a.txt", "things": tmp_path / "b.txt"}, permutations=10)
    assert res.out_dir.startswith(tempfile.gettempdir())
    assert res.activations.shape == (2, 4, model.cfg.d_mlp)
    _, cache = model.run_with_cache(["run", "walk", "jump", "sing", "dog", "cat", "tree", "house"], names=["blocks.8.mlp.hook_pre"], return_type=None)
    assert_bit_identical(res.activations.reshape(8, -1), cache["blocks.8.mlp.hook_pre"], "the challenge's rows are run_with_cache's")
    assert res.summary["categories"] == ["actions", "things"]


def test_explain_equals_the_cli(model, tmp_path):
    cli = json.loads(cli_ok("explain", "--model-dir", TINY, "--word", "elephant", "--neuron", "17", "--out-dir", tmp_path / "cli", "--json").stdout)
    ours = model.explain("elephant", neuron=17, out_dir=tmp_path / "py")
    assert ours.pop("out_dir") == str(tmp_path / "py")
    assert len(ours.pop("files")) == 4
    assert ours["word"] == "elephant" and ours["neuron"] == 17 and len(ours["tokens"]) == 2

    def values(d):
        """The explanation without its timings."""
        if isinstance(d, dict):
            return {k: values(v) for k, v in d.items() if "seconds" not in k and k not in ("model",)}
        if isinstance(d, list):
            return [values(v) for v in d]
        return d

    assert values(ours) == values(cli)


def test_trace(model, tmp_path):
    report = model.trace(words=VERBS, hook="blocks.2.mlp.hook_pre", out_dir=tmp_path / "t")
    assert report["hook"] == "blocks.2.mlp.hook_pre"
    assert report["n_tokens"] == sum(len(model.to_str_tokens(w)) for w in neoprobe_words(VERBS))
    assert report["dispatches"] and all("kernel" in d for d in report["dispatches"])
    assert report["out_dir"] == str(tmp_path / "t") and len(report["files"]) == 2
    cli = json.loads(cli_ok("trace", "--model-dir", TINY, "--words", VERBS, "--hook", "blocks.2.mlp.hook_pre", "--out-dir", tmp_path / "cli", "--json").stdout)
    assert [d["kernel"] for d in report["dispatches"]] == [d["kernel"] for d in cli["dispatches"]]


def neoprobe_words(path):
    from conftest import words_of

    return words_of(path)


def test_sweep_vocab_equals_the_cli(model, tmp_path):
    cli_ok("sweep", "vocab", "--model-dir", TINY, "--hook", "blocks.1.mlp.hook_pre", "--top-k", "5", "--out-dir", tmp_path / "cli")
    cli, cli_metadata = neoprobe.read_safetensors(tmp_path / "cli" / "vocab_topk.safetensors")
    res = model.sweep_vocab(tmp_path / "py", top_k=5, hook="blocks.1.mlp.hook_pre")
    assert sorted(res.arrays) == sorted(cli) == ["bottom_ids", "bottom_values", "mean", "std", "top_ids", "top_values"]
    assert res["top_ids"].shape == (model.cfg.d_mlp, 5) and res["top_ids"].dtype == np.int32
    for name in cli:
        np.testing.assert_array_equal(res[name], cli[name], name)
    assert res.metadata["hook"] == "blocks.1.mlp.hook_pre" and res.metadata["top_k"] == "5"
    assert "vocab.md" in [f.split("/")[-1] for f in res.files]
    # The top token of neuron 0 alone through the model gives the top value.
    top = int(res["top_ids"][0, 0])
    _, cache = model.run_with_cache([[top]], names=["blocks.1.mlp.hook_pre"], return_type=None)
    assert cache["blocks.1.mlp.hook_pre"][0, 0, 0] == res["top_values"][0, 0]


def test_verify_passes_and_a_fault_fails_without_raising(model):
    report = neoprobe.verify(model, kernel_variants=[model.kernel_variant])
    assert report["pass"] is True, [c for c in report["checks"] if c["pass"] is False]
    assert report["adapter"] == model.adapter and len(report["checks"]) > 10
    broken = neoprobe.verify(model, kernel_variants=[model.kernel_variant], _inject_fault="linear")
    assert broken["pass"] is False
    assert any(c["pass"] is False for c in broken["checks"])
