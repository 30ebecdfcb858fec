"""Every example of docs/USAGE.md's "Use it from your AL library" section, run as written."""
import pathlib
import re

import numpy as np
import pytest

USAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "USAGE.md"
SECTION = "## Use it from your AL library"


def _examples():
    text = USAGE.read_text()
    assert SECTION in text, f"docs/USAGE.md lost its section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


EXAMPLES = _examples()


@pytest.mark.parametrize("code", EXAMPLES, ids=lambda code: re.search(
    r"fishermask_ext\.adapters\.(\w+)", code).group(1))
def test_example_runs(code):
    scope = {}
    exec(compile(code, "docs/USAGE.md", "exec"), scope)
    picked = {"skactiveml": "idx", "modal": "idx", "deepal": "q_idxs"}
    for name in picked.values():
        if name in scope:
            assert len(scope[name]) == 10
    if "rows" in scope:          # modAL: the rows of the picked indices, whatever its version
        np.testing.assert_array_equal(scope["rows"], scope["X"][20:][scope["idx"]])
    if "al_data" in scope:
        assert scope["al_data"].n_labelled == 30
