"""Shared by the adapter tests: a small, fixed subset of scikit-learn's bundled digits."""
import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits():
    """(X [160, 16] float64 in [0, 1], y [160] int64): the first 160 digits, all 10 classes,
    each 8x8 image averaged over 2x2 blocks to 4x4, so that W of a 10-class linear model has
    D = 160 entries and a selection takes well under a second (64 features: D = 640, seconds)."""
    # Imported here, not at collection: a machine without scikit-learn (the GPU image) still
    # collects the other tests.
    load_digits = pytest.importorskip("sklearn.datasets").load_digits
    X, y = load_digits(return_X_y=True)
    X = X[:160].reshape(160, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(160, 16)
    return X / 16.0, y[:160].astype(np.int64)

