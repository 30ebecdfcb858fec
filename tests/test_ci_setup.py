"""Issue 13, items 9 and 10: the cost of step A next to the embedding figures (docs/BENCHMARKS.md),
and `.ci/setup` saying what it does (it was silent for 3 minutes)."""
import os
import re
import stat
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _section(text, title):
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_benchmarks_page_has_step_a_next_to_the_embedding_figures():
    with open(os.path.join(ROOT, "docs", "BENCHMARKS.md")) as f:
        embed = _section(f.read(), "## Embeddings")
    assert "**Step A cost" in embed, "no step A paragraph in the benchmarks' embeddings section"
    step_a = embed[embed.index("**Step A cost"):]
    assert re.search(r"[\d.]+x the time of the \"deep\" embeddings", step_a)   # a measured ratio
    assert re.search(r"peak memory was [\d,]+ MB", step_a)
    with open(os.path.join(ROOT, "benchmarks", "bench_embed.py")) as f:
        assert 'STEP_A = ["fisher:native"' in f.read()       # the benchmark it comes from


def test_ci_setup_prints_each_step_before_it_runs(tmp_path):
    """Run .ci/setup with a stand-in `python` first on PATH that only reports its arguments:
    every pip call and the final check must come right after a "[setup] ..." line."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "CALLED python $*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    for keep in ("0", "1"):
        env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}",
                   FISHERMASK_KEEP_TORCH=keep)
        res = subprocess.run(["bash", os.path.join(ROOT, ".ci", "setup")], env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        calls = [i for i, line in enumerate(lines) if line.startswith("CALLED python -m pip")]
        assert len(calls) == (3 if keep == "0" else 2), lines
        for i in calls:
            assert lines[i - 1].startswith("[setup] "), lines
        compile_step = next(line for line in lines if "compiling" in line)
        assert "minutes" in compile_step
        assert lines[0].startswith("[setup] ")
