"""benchmarks/run.py and its modules are scripts of the source checkout, not of the package:
their folder goes on sys.path for the tests here, as it is when the script runs."""
import os
import sys

BENCH_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)
