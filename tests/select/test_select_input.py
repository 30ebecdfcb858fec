"""select_batch on bad input: a clear error that names the argument and the fix."""
import pytest
import torch

import fishermask_ext as fm


X0 = torch.randn(6, 2, 3, dtype=torch.float64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(unlabeled=X0, budget=0), "budget must be between 1"),
    (dict(unlabeled=X0, budget=7), "budget must be between 1 and the 6 candidates in unlabeled, got 7"),
    (dict(unlabeled=X0, budget=2.5), "budget must be an int"),
    (dict(unlabeled=X0[:0], budget=1), "empty"),
    (dict(unlabeled=X0[0], budget=1), r"\[N, C, D\]"),
    (dict(unlabeled=X0.long(), budget=1), "float32 or float64"),
    (dict(unlabeled=X0.half(), budget=1), r"float16: selection reads float32 or float64 .*\.float\(\)"),
    (dict(unlabeled=X0.bfloat16(), budget=1), r"bfloat16: .*unlabeled\.float\(\)"),
    (dict(unlabeled=X0, budget=2, labeled=torch.randn(3, 2, 4, dtype=torch.float64)),
     "same mask"),
    (dict(unlabeled=X0, budget=2, labeled=torch.randn(3, 2, 3)), "convert one to match"),
    (dict(unlabeled=X0, budget=2, labeled_fisher=torch.eye(3, dtype=torch.float64)),
     "needs n_labeled"),
    (dict(unlabeled=X0, budget=2, n_labeled=3), "only used with labeled_fisher"),
    (dict(unlabeled=X0, budget=2, labeled=X0, labeled_fisher=torch.eye(3)), "not both"),
    (dict(unlabeled=X0, budget=2, pool_fisher=torch.tensor([[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]])),
     "not symmetric"),
    (dict(unlabeled=X0, budget=2, pool_fisher=torch.eye(4)), r"\[D, D\] = \[3, 3\]"),
    (dict(unlabeled=X0, budget=2, pool_fisher=torch.eye(3) * float("nan")), "NaN or Inf"),
    (dict(unlabeled=X0, budget=2, labeled_fisher=torch.eye(3) * float("inf"), n_labeled=2),
     "NaN or Inf"),
    (dict(unlabeled=X0, budget=2, labeled_fisher=-9 * torch.eye(3), n_labeled=4),
     "labeled_fisher must be positive semi-definite"),
    (dict(unlabeled=X0, budget=2, backward_steps=-1), "backward_steps must be an int >= 0"),
    (dict(unlabeled=X0, budget=2, lamb=0.0), "lamb must be > 0, got 0.0"),
    (dict(unlabeled=X0, budget=2, backend="gpu"), "backend must be one of"),
])
def test_bad_input_raises(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fm.select_batch(**kwargs)


@pytest.mark.parametrize("where", [(0, 0, 0), (5, 1, 2)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_inf_embeddings_raise(where, bad):
    X = X0.clone()
    X[where] = bad
    with pytest.raises(ValueError, match=f"NaN or Inf .*first bad rows: \\[{where[0]}\\]"):
        fm.select_batch(X, 2)
    with pytest.raises(ValueError, match="labeled contains NaN or Inf"):
        fm.select_batch(X0, 2, labeled=X)
    # With a given pool Fisher the scan cannot ride on the Fisher product: it runs on its own.
    with pytest.raises(ValueError, match=f"unlabeled contains NaN or Inf .*\\[{where[0]}\\]"):
        fm.select_batch(X, 2, pool_fisher=torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=f"emb contains NaN or Inf .*\\[{where[0]}\\]"):
        fm.fisher_matrix(X)


def test_overflowing_embeddings_raise():
    X = X0.clone()
    X[2, 0, 1] = 1e160                    # finite, but its square overflows float64
    with pytest.raises(ValueError, match="so large that XᵀX overflows .*rescale"):
        fm.select_batch(X, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device kind (CUDA)")
def test_mixed_devices_raise():
    with pytest.raises(ValueError, match="move it"):
        fm.select_batch(X0, 2, pool_fisher=torch.eye(3, device="cuda"))


def test_mixed_devices_raise_meta():
    # A meta-device pool Fisher stands in for a second device on CPU-only machines.
    with pytest.raises(ValueError, match="is on meta but the embeddings are on cpu"):
        fm.select_batch(X0, 2, pool_fisher=torch.eye(3, device="meta"))


def test_native_backend_missing_device_is_clear():
    if fm.native_available("cuda"):
        pytest.skip("CUDA kernels are built here")
    with pytest.raises(RuntimeError, match="no compiled kernel for device"):
        from fishermask_ext.ops import resolve
        resolve("greedy_select", torch.device("cuda"), "native")


@pytest.mark.parametrize("scale", [1.0, 10.0])
@pytest.mark.parametrize("arg", ["labeled_fisher", "pool_fisher"])
def test_a_fisher_that_is_not_psd_is_refused_at_any_scale(arg, scale):
    """Issue 24, item 7: labeled_fisher=-I was accepted (inflated gains), only -10·I caught;
    the tolerance now follows the matrix's own scale."""
    X = torch.randn(30, 10, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    F = -scale * torch.eye(20, dtype=torch.float64)
    extra = dict(n_labeled=20) if arg == "labeled_fisher" else {}
    with pytest.raises(ValueError, match=rf"{arg} must be positive semi-definite .*smallest "
                                         rf"eigenvalue is -{scale:g}, below the rounding"):
        fm.select_batch(X, 5, **{arg: F}, **extra)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_rank_deficient_fisher_formed_in_either_dtype_passes(dtype):
    """The tolerance covers the rounding of a singular Fisher (3 points, D = 200), whose
    smallest eigenvalues are zero only up to that rounding."""
    g = torch.Generator().manual_seed(1)
    L = torch.randn(3, 10, 200, dtype=dtype, generator=g)
    F = torch.einsum("ncd,nce->de", L, L) / 3                  # in the caller's dtype
    assert float(torch.linalg.eigvalsh(F.double())[0]) < 0     # rounding made it indefinite
    X = torch.randn(30, 10, 200, dtype=dtype, generator=g)
    picks = fm.select_batch(X, 4, labeled_fisher=F, n_labeled=3)
    assert len(picks) == 4
