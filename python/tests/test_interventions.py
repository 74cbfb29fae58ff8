"""run_with_hooks: interventions from Python equal `neoprobe extract` with the same flags, bit for
bit, and move the values they should (docs/interventions.md has the grammar)."""

import numpy as np
import pytest

import neoprobe
from conftest import TINY, VERBS, assert_bit_identical, cli_error, cli_ok, words_of

WORDS = ["dog", "running", "beautifully", "house"]
HOOKS = ["blocks.3.hook_resid_post", "logits"]


def extract(tmp_path, words, *flags, pool="none"):
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n")
    out = tmp_path / "out.safetensors"
    hooks = [a for h in HOOKS for a in ("--hook", h)]
    cli_ok("extract", "--model-dir", TINY, "--words", tmp_path / "words.txt", *hooks, "--pool", pool, "--out", out, *flags)
    arrays, _ = neoprobe.read_safetensors(out)
    return arrays


def unpadded(cache, hook):
    return np.concatenate([cache[hook][i, :n] for i, n in enumerate(cache.lengths)])


def test_every_kind_equals_the_command_line(model, tmp_path):
    vector = np.sin(np.arange(64, dtype=np.float32))
    means = np.stack([np.arange(256, dtype=np.float32) / 256, np.ones(256, dtype=np.float32)])
    np.save(tmp_path / "vector.npy", vector)
    np.save(tmp_path / "means.npy", means)
    interventions = [
        neoprobe.ablate("blocks.1.mlp.hook_post", [3, 17, 40]),
        neoprobe.ablate("blocks.0.attn.hook_z", heads=1),
        neoprobe.mean_ablate("blocks.1.mlp.hook_post", means, range(50, 60)),
        neoprobe.set_value("blocks.1.attn.hook_k", 0.25, heads=2),
        neoprobe.scale("blocks.2.hook_resid_pre", 0.5, positions=-1),
        neoprobe.steer("blocks.1.hook_resid_post", vector, scale=4),
    ]
    flags = [
        "--ablate", "blocks.1.mlp.hook_post:3,17,40",
        "--ablate", "blocks.0.attn.hook_z:head=1",
        "--mean-ablate", f"blocks.1.mlp.hook_post:{','.join(map(str, range(50, 60)))}={tmp_path / 'means.npy'}",
        "--set", "blocks.1.attn.hook_k:head=2=0.25",
        "--scale", "blocks.2.hook_resid_pre@-1=0.5",
        "--steer", f"blocks.1.hook_resid_post={tmp_path / 'vector.npy'}*4",
    ]
    cli = extract(tmp_path, WORDS, *flags)
    logits, cache = model.run_with_hooks(WORDS, interventions, names=HOOKS, pool="none")
    assert_bit_identical(unpadded(cache, "blocks.3.hook_resid_post"), cli["blocks.3.hook_resid_post"], "resid_post")
    assert_bit_identical(unpadded(cache, "logits"), cli["logits"], "logits")
    _, plain = model.run_with_cache(WORDS, names=HOOKS, pool="none")
    assert np.abs(plain["logits"] - cache["logits"]).max() > 1e-3, "the interventions changed nothing"
    assert interventions[0].flag == "--ablate blocks.1.mlp.hook_post:3,17,40"


def test_a_patch_from_a_clean_cache_equals_a_patch_from_extracts_file(model, tmp_path):
    clean, corrupt = ["The cat sat"], ["The dog sat"]
    _, cache = model.run_with_cache(clean, names=["blocks.1.hook_resid_pre"], pool="none", return_type=None)
    patched = model.run_with_hooks(
        corrupt, [neoprobe.patch("blocks.1.hook_resid_pre", cache["blocks.1.hook_resid_pre"], cache.lengths, positions=1)], pool="none"
    )
    (tmp_path / "clean.txt").write_text(clean[0] + "\n")
    source = tmp_path / "clean.safetensors"
    cli_ok("extract", "--model-dir", TINY, "--words", tmp_path / "clean.txt", "--hook", "blocks.1.hook_resid_pre", "--pool", "none", "--out", source)
    (tmp_path / "corrupt.txt").write_text(corrupt[0] + "\n")
    out = tmp_path / "patched.safetensors"
    cli_ok("extract", "--model-dir", TINY, "--words", tmp_path / "corrupt.txt", "--hook", "logits", "--pool", "none", "--out", out,
           "--patch", f"blocks.1.hook_resid_pre@1={source}")
    arrays, _ = neoprobe.read_safetensors(out)
    assert_bit_identical(patched[0], arrays["logits"], "patched logits")


def test_bad_interventions_raise_the_command_lines_message(model, tmp_path):
    with pytest.raises(ValueError) as raised:
        model.run_with_hooks(words_of(VERBS), [neoprobe.ablate("blocks.1.mlp.hook_post", 999)])
    assert str(raised.value) == cli_error(
        "extract", "--model-dir", TINY, "--words", VERBS, "--out", tmp_path / "a.npy", "--ablate", "blocks.1.mlp.hook_post:999"
    )
    with pytest.raises(ValueError, match="a steering vector of blocks.1.hook_resid_pre has 64"):
        model.run_with_hooks(["dog"], [neoprobe.steer("blocks.1.hook_resid_pre", np.ones(3))])
    with pytest.raises(TypeError, match="neoprobe.ablate"):
        model.run_with_hooks(["dog"], ["--ablate blocks.1.mlp.hook_post"])
