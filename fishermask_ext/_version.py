"""The package version, one home: setup.py reads it, the package and its commands print it."""
__version__ = "0.1.0"
