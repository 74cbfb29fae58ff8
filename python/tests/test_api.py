"""The rest of the API: shapes for unequal lengths and a single text, names (None, one, a
callable), the config, tokens, warnings and log lines, from_pretrained through the HF cache."""

import logging

import numpy as np
import pytest

import neoprobe
from conftest import TINY, assert_bit_identical


def test_shapes_for_unequal_lengths(model):
    words = ["dog", "elephant", "incomprehensibilities"]
    lengths = [len(model.to_str_tokens(w)) for w in words]
    assert len(set(lengths)) == 3
    longest, d, heads = max(lengths), model.cfg.d_model, model.cfg.n_heads
    names = ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.0.mlp.hook_pre"]
    logits, pooled = model.run_with_cache(words, names=names)
    assert pooled["blocks.0.hook_resid_pre"].shape == (3, d)
    assert pooled["blocks.0.mlp.hook_pre"].shape == (3, model.cfg.d_mlp)
    assert pooled["blocks.0.attn.hook_pattern"].shape == (3, heads, longest, longest)
    assert logits.shape == (3, model.cfg.d_vocab)
    logits, full = model.run_with_cache(words, names=names, pool="none")
    assert full.lengths.tolist() == lengths and full.lengths.dtype == np.int64
    assert full["blocks.0.hook_resid_pre"].shape == (3, longest, d)
    assert logits.shape == (3, longest, model.cfg.d_vocab)
    for i, n in enumerate(lengths):
        assert not full["blocks.0.hook_resid_pre"][i, n:].any()
        assert not logits[i, n:].any()
        pattern = full["blocks.0.attn.hook_pattern"][i]
        assert not pattern[:, n:, :].any() and not pattern[:, :, n:].any()
        np.testing.assert_allclose(pattern[:, :n, :n].sum(axis=-1), 1.0, rtol=1e-5)
        # The mean over a word's own rows is the pooled row, to rounding (pooling sums in f64).
        np.testing.assert_allclose(full["blocks.0.hook_resid_pre"][i, :n].mean(axis=0), pooled["blocks.0.hook_resid_pre"][i], atol=1e-6)
    assert full.pooling["blocks.0.attn.hook_pattern"] is None


def test_a_single_text_is_a_batch_of_one(model):
    logits, cache = model.run_with_cache("The cat sat", names=["blocks.1.hook_resid_post"])
    n = len(model.to_str_tokens("The cat sat"))
    assert cache["blocks.1.hook_resid_post"].shape == (1, n, model.cfg.d_model)
    assert logits.shape == (1, n, model.cfg.d_vocab)
    pooled, _ = model.run_with_cache("The cat sat", names=[], pool="last")
    assert_bit_identical(pooled[0], logits[0, -1], "the last row")
    assert_bit_identical(model("The cat sat"), logits, "model(text) is the logits")


def test_arrays_are_writable_float32_that_own_their_memory_once(model):
    logits, cache = model.run_with_cache(["dog"], names=["hook_embed"])
    for array in (logits, cache["hook_embed"]):
        assert array.dtype == np.float32 and array.flags.writeable and array.flags.c_contiguous
        base = array
        while isinstance(base, np.ndarray):
            base = base.base
        if isinstance(base, memoryview):
            base = base.obj
        assert isinstance(base, bytearray), "a view of the one bytearray the values were copied into"
        array[...] = 0


def test_names(model):
    logits, everything = model.run_with_cache("dog")
    assert list(everything) == [n for n in model.hook_names if n != "logits"]
    assert len(everything) == 2 + 14 * model.cfg.n_layers + 1
    _, one = model.run_with_cache("dog", names="blocks.3.hook_mlp_out")
    assert list(one) == ["blocks.3.hook_mlp_out"]
    _, chosen = model.run_with_cache("dog", names=lambda name: name.endswith("hook_resid_post"), return_type=None)
    assert list(chosen) == [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    assert_bit_identical(one["blocks.3.hook_mlp_out"], everything["blocks.3.hook_mlp_out"], "same values")


def test_the_fast_path_returns_no_logits(model):
    logits, cache = model.run_with_cache(["dog", "cat"], names=["blocks.2.mlp.hook_pre"], return_type=None)
    assert logits is None
    _, with_logits = model.run_with_cache(["dog", "cat"], names=["blocks.2.mlp.hook_pre"])
    assert_bit_identical(cache["blocks.2.mlp.hook_pre"], with_logits["blocks.2.mlp.hook_pre"], "same values either way")


def test_config_has_transformerlens_and_hf_names(model):
    cfg = model.cfg
    assert isinstance(cfg, dict)
    assert (cfg.n_layers, cfg.d_model, cfg.d_mlp, cfg.n_heads, cfg.d_vocab, cfg.n_ctx, cfg.window_size) == (12, 64, 256, 4, 50257, 2048, 8)
    assert cfg["d_head"] == 16 and cfg.act_fn == "gelu_new"
    assert (cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size) == (12, 64, 256, 50257)
    assert cfg.attn_types[:2] == ["global", "local"]
    with pytest.raises(AttributeError):
        cfg.no_such_field
    assert model.adapter and model.kernel_variant in ("simple", "cpu", "tiled")
    assert model.model_dir == str(TINY) and model.commit is None


def test_tokens(model):
    tokens = model.to_tokens("Hello world")
    assert tokens.dtype == np.int64 and tokens.shape == (1, 2)
    assert model.to_str_tokens("Hello world") == ["Hello", " world"]
    assert model.to_str_tokens(tokens) == ["Hello", " world"]
    assert model.to_str_tokens("dog", prefix_space=True) == [" dog"]
    listed = model.to_tokens(["dog", "elephant"])
    assert [t.tolist() for t in listed] == [model.to_tokens("dog")[0].tolist(), model.to_tokens("elephant")[0].tolist()]


def test_a_text_longer_than_the_model_is_cut_with_a_warning(model):
    text = "the cat " * 1100
    with pytest.warns(neoprobe.NeoprobeWarning, match="cut to the first 2048"):
        _, cache = model.run_with_cache(text, names=["hook_embed"], return_type=None)
    assert cache["hook_embed"].shape == (1, 2048, model.cfg.d_model)


def test_a_warning_points_at_the_callers_line(model):
    text = "the cat " * 1100
    calls = [
        lambda: model.run_with_cache(text, names=["hook_embed"], return_type=None),
        lambda: model.run_with_hooks(text, names=["hook_embed"], return_type=None),
        lambda: model(text, pool="last"),
    ]
    for call in calls:
        with pytest.warns(neoprobe.NeoprobeWarning) as caught:
            call()
        assert [(w.filename, w.lineno) for w in caught] == [(__file__, call.__code__.co_firstlineno)]


def test_steps_go_to_the_neoprobe_logger(caplog):
    with caplog.at_level(logging.INFO, logger="neoprobe"):
        neoprobe.Model.from_dir(TINY)
    assert any("with the" in r.getMessage() and r.name == "neoprobe" for r in caplog.records)


def test_from_pretrained_through_the_hf_cache(offline_hub, model):
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    snapshot = offline_hub("test-org/tiny-neo", commit)
    hub = neoprobe.Model.from_pretrained("test-org/tiny-neo", revision=commit)
    assert (hub.name, hub.commit, hub.model_dir) == ("test-org/tiny-neo", commit, str(snapshot))
    main = neoprobe.Model.from_pretrained("test-org/tiny-neo")
    assert main.commit == commit, "main resolves through refs/main"
    _, a = hub.run_with_cache(["dog", "cat"], names=["blocks.8.mlp.hook_pre"], return_type=None)
    _, b = model.run_with_cache(["dog", "cat"], names=["blocks.8.mlp.hook_pre"], return_type=None)
    assert_bit_identical(a["blocks.8.mlp.hook_pre"], b["blocks.8.mlp.hook_pre"], "the same model")
    res = hub.challenge(permutations=0)
    assert res.summary["model"] == "test-org/tiny-neo" and res.summary["commit"] == commit
