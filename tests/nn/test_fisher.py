"""Step A (fisher_diagonal) with the fused fisher_*_sq ops, native and twin, against the
per-sample loop of fishermask_ext.testing (the definition) and the package's previous path
(batch_fisher_diagonal), on every module kind step A supports."""
import pytest
import torch
from torch import nn

from fishermask_ext import MLP, ResNet18Narrow, SmallCNN, fisher_diagonal
from fishermask_ext.nn.hooks import class_seeds, fisher_seeds
from fishermask_ext.testing import (batch_fisher_diagonal, derived_tolerance,
                                    loop_fisher_diagonal, max_error, tol)

from testing import ReuseNet, assert_fisher_equal, peak_bytes, require_native


class ConvTwice(nn.Module):
    """One Conv2d (with bias) and one BatchNorm2d applied twice per sample: their per-sample
    gradients sum both calls before they are squared."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.linear = nn.Linear(2, 3)

    def forward(self, x):  # x: [n, 2, 5, 5]
        h = torch.tanh(self.bn(self.conv(torch.tanh(self.bn(self.conv(x))))))
        return self.linear(h.mean((2, 3)))


# name: (model factory, input shape); BatchNorm statistics are warmed on the inputs.
CASES = {
    "mlp": (lambda: MLP(in_features=6, num_classes=4, hidden=(5, 3)), (7, 6)),
    "binary": (lambda: MLP(in_features=6, num_classes=2, hidden=(5,)), (7, 6)),   # one seed
    "small_cnn": (lambda: SmallCNN(in_channels=2, num_classes=4, input_size=6, width=4,
                                   hidden=6), (7, 2, 6, 6)),
    "resnet18_narrow": (lambda: ResNet18Narrow(num_classes=3), (3, 3, 32, 32)),
    "reuse": (ReuseNet, (5, 2, 9)),
    "conv_twice": (ConvTwice, (5, 2, 5, 5)),
}


def _warmed(name, dtype=torch.float64):
    make, shape = CASES[name]
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():                      # non-trivial BatchNorm running statistics
        model.train()(x * 2 + 0.5)
    return model.eval().to(dtype), x.to(dtype)


@pytest.fixture(scope="module")
def truth():
    """{case: (model, x, the per-sample loop's Fisher diagonal)} in float64."""
    out = {}
    for name in CASES:
        model, x = _warmed(name)
        out[name] = (model, x, loop_fisher_diagonal(model, x))
    return out


@pytest.mark.parametrize("backend", ["native", "torch"])
@pytest.mark.parametrize("name", list(CASES))
def test_equals_the_per_sample_loop_and_the_previous_path(truth, name, backend):
    if backend == "native":
        require_native("cpu", "fisher_conv2d_sq")
    model, x, expected = truth[name]
    # Odd sizes: a 7-sample pool in loads of 5, passes of 3 (a partial pass in each load).
    for got in (fisher_diagonal(model, x, batch_size=5, rows=3, backend=backend),
                fisher_diagonal(model, x, backend=backend), batch_fisher_diagonal(model, x)):
        assert_fisher_equal(got, expected, model, x)


@pytest.mark.parametrize("name", ["small_cnn", "reuse", "conv_twice"])
def test_float32_is_as_close_as_the_previous_path(truth, name):
    """float32 against the float64 loop, all entries as one output: within twice the error of
    the previous float32 path (a single small tensor can be luckily exact in either)."""
    require_native("cpu", "fisher_conv2d_sq")
    model, x = _warmed(name, torch.float32)
    flat = lambda f: torch.cat([t.flatten() for t in f.values()])
    got, old = fisher_diagonal(model, x, rows=4), batch_fisher_diagonal(model, x)
    expected = flat(truth[name][2])
    assert all(t.dtype == torch.float32 for t in got.values())
    assert max_error(flat(got), expected) <= derived_tolerance(flat(old), expected)


def test_an_empty_pool_is_a_clear_error():
    model, x = _warmed("small_cnn")
    with pytest.raises(ValueError, match="no samples"):
        fisher_diagonal(model, x[:0])


def test_passes_of_one_sample():
    """rows=1 (every pass a single sample) still sums to the loop's values."""
    model, x = _warmed("small_cnn")
    assert_fisher_equal(fisher_diagonal(model, x[:3], rows=1), loop_fisher_diagonal(model, x[:3]),
                        model, x[:3])


def test_bad_rows_are_named():
    model, x = _warmed("mlp")
    with pytest.raises((TypeError, ValueError), match="rows"):
        fisher_diagonal(model, x, rows=0)


def _softmax_fisher(seeds):
    """Σ_i seeds[i]ᵀ seeds[i] per sample, [n, C, C], in float64."""
    s = seeds.double()
    return torch.einsum("rna,rnb->nab", s, s)


@pytest.mark.parametrize("C", [1, 2, 3, 10, 32, 33])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fisher_seeds_factor_the_softmax_fisher_with_one_seed_fewer(C, dtype):
    """fisher_seeds: max(C − 1, 1) seeds whose products equal those of the C class seeds
    sqrt(p_c)(e_c − p), i.e. diag(p) − ppᵀ, including samples whose p underflows to one-hot.
    Above 32 classes the C class seeds themselves. The expected products come from the same
    dtype-rounded logits, in float64. Tolerance: tol over the ≤ C products of a sum, entries at
    most 1 (magnitude 1); each product of two seeds carries twice a seed's error: float32 seeds
    are float64 results rounded once (u each, so condition 2), float64 ones carry eigh's backward
    error, a few eps·‖S‖ ≤ 8 eps per entry (condition 16)."""
    torch.manual_seed(0)
    logits = torch.randn(64, C, dtype=torch.float64) * 3
    logits[32:] *= 10            # p_c down to 1e-40: eigh rounds some kept eigenvalues below 0
    logits[0, 0] += 1000.0                          # p = e_0 exactly: S = 0
    logits[1, : min(C, 2)] += 800.0                 # p with C − 2 zeros: rank 1
    seeds = fisher_seeds(logits.to(dtype))
    assert seeds.dtype == dtype and torch.isfinite(seeds).all()
    assert seeds.shape == (C - 1 if 2 <= C <= 32 else C, 64, C)
    expected = _softmax_fisher(class_seeds(logits.to(dtype).double(), "sqrt_p"))
    torch.testing.assert_close(_softmax_fisher(seeds), expected, **tol(
        dtype, terms=C, condition=2 if dtype == torch.float32 else 16))


@pytest.mark.parametrize("bias", [[2000.0, 0, 0, 0], [2000.0, 2000.0, 0, 0]],
                         ids=["one-hot", "two-classes"])
def test_step_a_with_probabilities_that_underflow(bias):
    """p with exact zeros: one-hot (S = 0, Fisher 0) or (½, ½, 0, 0) (S of rank 1, two zero
    eigenvalues beside the dropped one); the fused path equals the per-sample loop."""
    model, x = _warmed("mlp")
    with torch.no_grad():
        model.linear.bias.copy_(torch.tensor(bias, dtype=torch.float64))
    got = fisher_diagonal(model, x)
    expected = loop_fisher_diagonal(model, x)
    for n in expected:
        assert torch.isfinite(got[n]).all(), n
    assert_fisher_equal(got, expected, model, x)


def test_step_a_memory_is_bounded_by_rows_not_the_batch():
    """Whole step A (forward, seeded backward passes, the fused ops): the peak of torch's CPU
    allocator is the same for batches of 16 and 64 images at rows=4, grows with rows, and is far
    below the per-sample gradients of a batch (what the previous path held)."""
    require_native("cpu", "fisher_conv2d_sq")
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, input_size=8, num_classes=10)
    data = torch.randn(64, 1, 8, 8)

    def peak(batch_size, rows):
        return peak_bytes(lambda: fisher_diagonal(model, data, n_samples=64,
                                                  batch_size=batch_size, rows=rows))
    small, large = peak(16, 4), peak(64, 4)
    assert small == large, (small, large)
    assert peak(64, 16) > 1.5 * large                      # rows is what sizes the passes
    grads = 64 * sum(p.numel() for p in model.parameters()) * 4    # float32, one class
    assert large < grads / 4, (large, grads)
