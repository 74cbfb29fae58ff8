"""The code of docs/python.md and of the README's "From Python" section runs as written, against
the tiny fixture model: MODEL_DIR stands for fixtures/tiny-neo, and an offline Hugging Face cache
holds that model as EleutherAI/gpt-neo-125m at the pinned commit, so from_pretrained finds it.
Each file's blocks run in order in one namespace, as a reader would paste them."""

import re

import pytest

import neoprobe
from conftest import REPO, TINY

PLACEHOLDER = "MODEL_DIR"


def python_blocks(markdown):
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def readme_from_python():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return python_blocks(section)


@pytest.mark.parametrize("blocks", [python_blocks((REPO / "docs" / "python.md").read_text()), readme_from_python()], ids=["docs/python.md", "README"])
def test_the_examples_run(blocks, offline_hub, monkeypatch, tmp_path):
    assert blocks, "the examples are found"
    offline_hub(neoprobe.DEFAULT_MODEL, neoprobe.DEFAULT_REVISION)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "docs"}
    for i, block in enumerate(blocks):
        code = block.replace(PLACEHOLDER, str(TINY))
        exec(compile(code, f"block {i}", "exec"), namespace)
