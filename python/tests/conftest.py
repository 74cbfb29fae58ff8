"""Shared fixtures: the tiny HF-made GPT-Neo of fixtures/tiny-neo, the neoprobe binary built by
`cargo build --release` (or $NEOPROBE_CLI), and helpers to run it and read what it writes.

Nothing here skips: a missing binary or fixture fails the tests that need it."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import neoprobe

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "fixtures" / "tiny-neo"
CLI = Path(os.environ.get("NEOPROBE_CLI", REPO / "target" / "release" / "neoprobe"))
VERBS = REPO / "data" / "verbs.txt"
NOUNS = REPO / "data" / "nouns.txt"
TEXT = REPO / "fixtures" / "text.txt"


def words_of(path):
    """A word list's words, read as the CLI reads them (trimmed, blank lines skipped)."""
    return [line.strip() for line in Path(path).read_bytes().decode("utf-8").splitlines() if line.strip()]


def text_of(path):
    """A text file exactly as the CLI reads it (no newline translation)."""
    return Path(path).read_bytes().decode("utf-8")


def run_cli(*args, cwd=REPO, env=None):
    """Runs the neoprobe binary; returns the finished process (stdout and stderr as text)."""
    assert CLI.is_file(), f"no neoprobe binary at {CLI}: run `cargo build --release` first"
    return subprocess.run([str(CLI), *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env)


def cli_ok(*args, **kwargs):
    done = run_cli(*args, **kwargs)
    assert done.returncode == 0, f"neoprobe {' '.join(map(str, args))} failed:\n{done.stderr}"
    return done


def cli_error(*args, **kwargs):
    """The message the CLI prints after `error: ` for a run that must fail."""
    done = run_cli(*args, **kwargs)
    assert done.returncode != 0, f"neoprobe {' '.join(map(str, args))} succeeded; it should fail"
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0][len("error: "):]


def bits(array):
    """The array's float32 bit patterns, so that equality is bit for bit (NaN included)."""
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


def assert_bit_identical(actual, expected, what=""):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}"
    same = bits(actual) == bits(expected)
    assert same.all(), f"{what}: {np.count_nonzero(~same)} of {same.size} values differ, max abs {np.max(np.abs(actual - expected))}"


def unpad(array, lengths):
    """`[batch, pos, d]` with each sequence's rows first → `[tokens, d]`, sequences end to end."""
    return np.concatenate([array[i, :n] for i, n in enumerate(lengths)])


def make_hub_cache(home, repo_id, commit, model_dir=TINY):
    """An HF cache under `home` holding `model_dir`'s files as the snapshot `commit` of `repo_id`,
    laid out as huggingface_hub lays it out (snapshot files are links)."""
    repo = Path(home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        os.symlink(Path(model_dir).resolve() / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture(scope="session")
def model():
    return neoprobe.Model.from_dir(TINY)


@pytest.fixture(scope="session")
def words():
    return words_of(VERBS) + words_of(NOUNS)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An offline HF cache in a temporary HF_HOME; returns a function that adds a model to it."""
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return lambda repo_id, commit: make_hub_cache(home, repo_id, commit)


# A skipped test counts as a failure: every test here must run wherever the suite runs.
_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(f"{len(_skipped)} tests skipped, which fails the run: {', '.join(_skipped)}")
