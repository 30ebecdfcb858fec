"""Benchmark sizing: tiny inputs for the smoke pass (benchmarks disabled), full ones otherwise."""
import pytest


@pytest.fixture(scope="session")
def smoke(request):
    """True when pytest-benchmark is disabled (the default in pytest.ini; CI's smoke pass)."""
    cfg = request.config
    return bool(cfg.getoption("benchmark_disable")) and not cfg.getoption("benchmark_enable")
