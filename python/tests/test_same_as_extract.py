"""run_with_cache gives bit for bit what `neoprobe extract` writes for the same input and hooks:
words pooled, a text unpooled with several hooks (a pattern, the attention pattern, the logits),
words unpooled (unequal lengths, padded), small batches, token ids and prefix_space."""

import numpy as np
import pytest

import neoprobe
from conftest import (
    NOUNS,
    TEXT,
    TINY,
    VERBS,
    assert_bit_identical,
    cli_ok,
    text_of,
    unpad,
    words_of,
)


def extract(tmp_path, *args, name="out.safetensors"):
    out = tmp_path / name
    cli_ok("extract", "--model-dir", TINY, *args, "--out", out)
    if name.endswith(".npy"):
        return np.load(out)
    arrays, _ = neoprobe.read_safetensors(out)
    return arrays


def test_words_pooled_and_their_logits(model, tmp_path):
    cli = extract(tmp_path, "--words", VERBS, "--hook", "blocks.8.mlp.hook_pre", "--hook", "logits")
    logits, cache = model.run_with_cache(words_of(VERBS), names=["blocks.8.mlp.hook_pre", "logits"])
    assert list(cache) == ["blocks.8.mlp.hook_pre", "logits"]
    assert_bit_identical(cache["blocks.8.mlp.hook_pre"], cli["blocks.8.mlp.hook_pre"], "mlp.hook_pre")
    assert cache["blocks.8.mlp.hook_pre"].shape == (100, model.cfg.d_mlp)
    assert_bit_identical(cache["logits"], cli["logits"], "named logits")
    assert_bit_identical(logits, cli["logits"], "returned logits")
    assert cache.pooling == {"blocks.8.mlp.hook_pre": "mean", "logits": "last"}


def test_the_challenge_words_into_one_npy(model, tmp_path):
    (tmp_path / "words.txt").write_text("\n".join(words_of(VERBS) + words_of(NOUNS)) + "\n")
    cli = extract(tmp_path, "--words", tmp_path / "words.txt", "--hook", "transformer.h.8.mlp.c_fc", name="a.npy")
    _, cache = model.run_with_cache(
        words_of(VERBS) + words_of(NOUNS), names=["transformer.h.8.mlp.c_fc"], pool="mean", return_type=None
    )
    assert_bit_identical(cache["blocks.8.mlp.hook_pre"], cli, "c_fc")


def test_a_text_unpooled_at_several_hooks(model, tmp_path):
    hooks = ["blocks.*.mlp.hook_pre", "blocks.7.attn.hook_pattern", "hook_embed", "ln_final.hook_normalized", "logits"]
    cli = extract(tmp_path, "--text", TEXT, *[a for h in hooks for a in ("--hook", h)])
    logits, cache = model.run_with_cache(text_of(TEXT), names=hooks)
    n = len(model.to_str_tokens(text_of(TEXT)))
    assert sorted(cache) == sorted(cli), "the same hooks"
    order = [h for h in model.hook_names if h in cache]
    assert list(cache) == order, "in the forward's order"
    assert len(cache) == model.cfg.n_layers + 4
    assert cache.lengths.tolist() == [n]
    for name, values in cache.items():
        if name.endswith("hook_pattern"):
            assert values.shape == (1, model.cfg.n_heads, n, n)
            assert_bit_identical(values, cli[name], name)
        else:
            assert values.shape[:2] == (1, n), name
            assert_bit_identical(values[0], cli[name], name)
    assert logits.shape == (1, n, model.cfg.d_vocab)
    assert_bit_identical(logits[0], cli["logits"], "logits")


def test_words_unpooled_are_padded_to_the_longest(model, tmp_path):
    hooks = ["blocks.3.hook_resid_post", "blocks.3.attn.hook_pattern", "logits"]
    cli = extract(tmp_path, "--words", NOUNS, "--pool", "none", *[a for h in hooks for a in ("--hook", h)])
    words = words_of(NOUNS)
    logits, cache = model.run_with_cache(words, names=hooks[:2], pool="none")
    lengths = [len(model.to_str_tokens(w)) for w in words]
    assert cache.lengths.tolist() == lengths and len(set(lengths)) > 1, "the nouns have unequal lengths"
    longest = max(lengths)
    resid = cache["blocks.3.hook_resid_post"]
    assert resid.shape == (len(words), longest, model.cfg.d_model)
    assert_bit_identical(unpad(resid, lengths), cli["blocks.3.hook_resid_post"], "resid_post")
    for i, n in enumerate(lengths):
        assert not resid[i, n:].any(), f"word {i}: rows past its {n} tokens are zero"
    assert_bit_identical(cache["blocks.3.attn.hook_pattern"], cli["blocks.3.attn.hook_pattern"], "pattern")
    assert logits.shape == (len(words), longest, model.cfg.d_vocab)
    assert_bit_identical(unpad(logits, lengths), cli["logits"], "logits")


def test_small_batches_give_the_same_values(tmp_path):
    small = neoprobe.Model.from_dir(TINY, batch_tokens=7)
    cli = extract(tmp_path, "--words", VERBS, "--hook", "blocks.2.*", "--batch-tokens", "7")
    cli_default = extract(tmp_path, "--words", VERBS, "--hook", "blocks.2.*", name="default.safetensors")
    steps = []
    _, cache = small.run_with_cache(words_of(VERBS), names="blocks.2.*", return_type=None, progress=lambda d, t: steps.append((d, t)))
    total = sum(len(small.to_str_tokens(w)) for w in words_of(VERBS))
    assert len(steps) >= total // 7 and steps[-1] == (total, total), "one progress call per batch of at most 7 tokens"
    assert len(cache) == 14
    for name in cache:
        assert_bit_identical(cache[name], cli[name], name)
        assert_bit_identical(cache[name], cli_default[name], name)


def test_token_ids_run_as_the_text_does(model):
    text = text_of(TEXT)
    _, from_text = model.run_with_cache(text, names=["blocks.5.hook_attn_out"], return_type=None)
    tokens = model.to_tokens(text)
    assert tokens.dtype == np.int64 and tokens.shape == (1, from_text.lengths[0])
    for ids in (tokens, tokens[0], tokens[0].tolist(), [tokens[0]]):
        _, from_ids = model.run_with_cache(ids, names=["blocks.5.hook_attn_out"], return_type=None)
        assert_bit_identical(from_ids["blocks.5.hook_attn_out"], from_text["blocks.5.hook_attn_out"], "ids")


def test_prefix_space(model, tmp_path):
    cli = extract(tmp_path, "--words", VERBS, "--hook", "blocks.0.hook_resid_post", "--prefix-space", name="p.npy")
    _, cache = model.run_with_cache(words_of(VERBS), names=["blocks.0.hook_resid_post"], prefix_space=True)
    assert_bit_identical(cache["blocks.0.hook_resid_post"], cli, "prefix space")
    _, plain = model.run_with_cache(words_of(VERBS), names=["blocks.0.hook_resid_post"])
    assert not np.array_equal(plain["blocks.0.hook_resid_post"], cli), "the space changes the tokens"


@pytest.mark.parametrize("pool", ["first", "last", "max"])
def test_every_pooling(model, tmp_path, pool):
    cli = extract(tmp_path, "--words", NOUNS, "--hook", "blocks.1.mlp.hook_post", "--pool", pool, name="p.npy")
    _, cache = model.run_with_cache(words_of(NOUNS), names=["blocks.1.mlp.hook_post"], pool=pool, return_type=None)
    assert_bit_identical(cache["blocks.1.mlp.hook_post"], cli, pool)
