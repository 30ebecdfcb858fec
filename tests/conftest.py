"""Loaded before any test module: pytest puts this folder on sys.path for it, so
`from testing import ...` works from every test file, also those in tests/nn and tests/al."""
