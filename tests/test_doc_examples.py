"""Every Python block of the README and of docs/USAGE.md runs as written, each in a fresh
namespace, in an empty folder; and the README points only inside the repository. These tests run
the blocks and check links; they do not pin the prose. The adapter examples of docs/USAGE.md run
in tests/adapters/test_usage_examples.py, with checks of their picks."""
import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ADAPTERS = "## Use it from your AL library"


def _blocks(name, skip_section=None):
    """(id, code) of every ```python block of `name`, outside `skip_section`."""
    with open(os.path.join(ROOT, name)) as f:
        text = f.read()
    out = []
    for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        before = text[:m.start()]
        section = before[before.rfind("\n## ") + 1:].split("\n", 1)[0]
        if skip_section is None or section != skip_section:
            out.append((f"{name}:{before.count(chr(10)) + 1}", m.group(1)))
    return out


BLOCKS = _blocks("README.md") + _blocks("docs/USAGE.md", skip_section=ADAPTERS)


def test_the_readme_has_an_api_and_an_adapter_example():
    assert len(_blocks("README.md")) >= 2


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[i for i, _ in BLOCKS])
def test_block_runs_as_written(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)           # blocks that write files (a store) write them here
    exec(compile(code, "block", "exec"), {"__name__": "__doc_example__"})


def test_readme_links_stay_inside_the_repository():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    targets = re.findall(r"\]\(([^)]+)\)", text)
    assert targets
    for target in targets:
        assert "://" not in target, target
        path = target.split("#")[0]
        assert os.path.exists(os.path.join(ROOT, path)), target
