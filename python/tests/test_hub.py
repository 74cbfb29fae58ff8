"""Models from the hub as it stores them, through the hub imitation of the Rust tests
(examples/fake_hub.rs): one safetensors file, a sharded checkpoint, a pytorch_model.bin-only
revision with the hub's safetensors conversion, and one without. Each loaded model gives exactly
the fixture model's values."""

import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import neoprobe
from conftest import REPO, TINY, assert_bit_identical

FAKE_HUB = Path(os.environ.get("NEOPROBE_FAKE_HUB", REPO / "target" / "release" / "examples" / "fake_hub"))
WORDS = ["dog", "running", "beautifully"]


@pytest.fixture(scope="module")
def hub():
    assert FAKE_HUB.is_file(), f"no hub imitation at {FAKE_HUB}: run `cargo build --release --example fake_hub`"
    server = subprocess.Popen([str(FAKE_HUB)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    converted = server.stdout.readline().strip()
    assert url.startswith("http://"), url
    yield url, converted
    server.stdin.close()
    server.wait(timeout=10)


@pytest.fixture
def online(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub[0])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return hub


def values(model):
    _, cache = model.run_with_cache(WORDS, names=["blocks.*.hook_resid_post"], return_type=None)
    return np.stack([cache[f"blocks.{l}.hook_resid_post"] for l in range(12)])


@pytest.fixture(scope="module")
def expected():
    return values(neoprobe.Model.from_dir(TINY))


@pytest.mark.parametrize("repo", ["test-org/tiny-single", "test-org/tiny-sharded"])
def test_single_and_sharded_checkpoints_give_the_fixtures_values(online, expected, repo):
    model = neoprobe.Model.from_pretrained(repo, revision="main")
    assert_bit_identical(values(model), expected, repo)
    snapshot = Path(os.environ["HF_HOME"]) / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots"
    names = sorted(p.name for p in next(snapshot.iterdir()).iterdir())
    if repo.endswith("sharded"):
        assert "model.safetensors.index.json" in names and len([n for n in names if n.startswith("model-")]) == 3
    else:
        assert "model.safetensors" in names


def test_a_pickle_only_revision_loads_the_hubs_conversion_with_a_warning(online, expected):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = neoprobe.Model.from_pretrained("test-org/tiny-pickled", revision="main")
    said = [str(w.message) for w in caught if issubclass(w.category, neoprobe.NeoprobeWarning)]
    assert len(said) == 1 and "pull request #1" in said[0] and online[1] in said[0], said
    assert_bit_identical(values(model), expected, "the conversion")


def test_a_pickle_only_revision_without_a_conversion_is_refused(online):
    with pytest.raises(FileNotFoundError) as err:
        neoprobe.Model.from_pretrained("test-org/tiny-pickle-only", revision="main")
    message = str(err.value)
    assert "pytorch_model.bin" in message and "does not unpickle" in message, message
    assert "\n" not in message
