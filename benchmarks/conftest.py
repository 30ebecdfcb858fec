"""Benchmark sizing: tiny inputs for the smoke pass (benchmarks disabled) and for
`python benchmarks/run.py --quick` (benchmarks timed, `--smoke-sizes`), full ones otherwise."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--smoke-sizes", action="store_true", default=False,
                     help="time every benchmark at its smoke sizes (benchmarks/run.py --quick)")


@pytest.fixture(scope="session")
def smoke(request):
    """True for the smoke sizes: when pytest-benchmark is disabled (the default in pytest.ini;
    CI's smoke pass) or when --smoke-sizes asks for them with timing on."""
    cfg = request.config
    if cfg.getoption("smoke_sizes"):
        return True
    return bool(cfg.getoption("benchmark_disable")) and not cfg.getoption("benchmark_enable")
