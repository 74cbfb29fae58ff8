"""run_with_cache against HuggingFace transformers' own GPT-Neo on the tiny fixture model, within
the tolerances of tests/hf_fixtures.rs (fixtures/README.md explains them): every hook of blocks 7
(local) and 8 (global) and ln_final on the 200 words (each alone, unpooled) and on a 133-token
text; the logits at HF's 256 sampled columns, each row's logsumexp and the text's loss."""

import numpy as np
import pytest

import neoprobe
from conftest import REPO, TEXT, text_of, unpad

HF = REPO / "fixtures" / "hf_activations.safetensors"
TOLERANCE = 2e-6
LAYERNORM_TOLERANCE = 6e-6
LOGITS_TOLERANCE = 5e-6
LOGSUMEXP_TOLERANCE = 2e-6

POINTS = [
    "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z",
    "hook_attn_out", "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post",
    "hook_mlp_out", "hook_resid_post",
]
HOOKS = [f"blocks.{layer}.{point}" for layer in (7, 8) for point in POINTS] + ["ln_final.hook_normalized"]


@pytest.fixture(scope="module")
def hf():
    arrays, _ = neoprobe.read_safetensors(HF)
    return arrays


def tolerance(hook):
    return LAYERNORM_TOLERANCE if "normalized" in hook else TOLERANCE


def inputs(words):
    return {"words": words, "text": text_of(TEXT)}


@pytest.mark.parametrize("input", ["words", "text"])
def test_every_hook_of_blocks_7_and_8(model, hf, words, input):
    _, cache = model.run_with_cache(inputs(words)[input], names=HOOKS, pool="none", return_type=None)
    assert sorted(cache) == sorted(HOOKS)
    failures = []
    for hook in HOOKS:
        ours = unpad(cache[hook], cache.lengths)
        theirs = hf[f"{input}.{hook}"]
        assert ours.shape == theirs.shape, hook
        error = float(np.max(np.abs(ours - theirs)))
        if not error <= tolerance(hook):
            failures.append(f"{hook}: {error:.3g} > {tolerance(hook):g}")
    assert not failures, f"{input} differs from HF at {failures}"


def logsumexp(rows):
    rows = rows.astype(np.float64)
    top = rows.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(rows - top).sum(axis=1, keepdims=True)))[:, 0]


@pytest.mark.parametrize("input", ["words", "text"])
def test_logits_logsumexp_and_loss(model, hf, words, input):
    logits, cache = model.run_with_cache(inputs(words)[input], names=[], pool="none")
    assert cache == {}
    rows = unpad(logits, cache.lengths)
    columns = hf["logits_columns"]
    error = np.max(np.abs(rows[:, columns] - hf[f"{input}.logits_sample"]))
    assert error <= LOGITS_TOLERANCE, f"{input}: logits differ from HF's by {error:g}"
    lse = logsumexp(rows)
    error = np.max(np.abs(lse - hf[f"{input}.logsumexp"].astype(np.float64)))
    assert error <= LOGSUMEXP_TOLERANCE, f"{input}: logsumexp differs from HF's by {error:g}"
    if input == "text":
        ids = model.to_tokens(text_of(TEXT))[0]
        loss = np.mean(lse[:-1] - rows[np.arange(len(ids) - 1), ids[1:]].astype(np.float64))
        assert abs(loss - float(hf["text.loss"][0])) <= LOGSUMEXP_TOLERANCE, f"loss {loss} vs HF's {hf['text.loss'][0]}"
