"""`from testing import ...` for the tests in this folder: the shared helpers now live in
fishermask_ext.testing, where the benchmarks can import them too."""
from fishermask_ext.testing import DEVICES, DTYPES, needs_native, require_native  # noqa: F401
