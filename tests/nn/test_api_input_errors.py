"""The API's clear errors for inputs that used to fail inside torch (a matmul, an internal
argument name, a raw dtype error, autograd's out= rule)."""
import numpy as np
import pytest
import torch

import fishermask_ext as fm
from fishermask_ext.testing import network_terms, tol
from fishermask_ext.nn import ParamMask


def _mlp(**kw):
    torch.manual_seed(0)
    return fm.get_model("mlp", **{"in_features": 12, "num_classes": 3, "hidden": (5,), **kw})


def _mask(model):
    return ParamMask(model, {"linear.weight": torch.arange(5)})


def test_mlp_on_digits_names_in_features():
    """Item 7: get_model("mlp", num_classes=10) on 8x8 digits failed inside a matmul."""
    model = fm.get_model("mlp", num_classes=10)
    with pytest.raises(ValueError, match=r"MLP\(in_features=784\) got inputs of shape "
                                         r"\(4, 1, 8, 8\), 64 values each; build it with "
                                         r"get_model\('mlp', in_features=64"):
        model(torch.randn(4, 1, 8, 8))
    assert fm.get_model("mlp", in_features=64)(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    with pytest.raises(TypeError, match="model 'mlp' has no option in_feature; its options: "
                                        "in_features"):
        fm.get_model("mlp", in_feature=64)


def test_driver_infers_the_input_size():
    from fishermask_ext.al.training import build_model
    model = build_model("mlp", (1, 8, 8), 10)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_embeddings_that_require_grad(backend):
    """Item 8: selection on embeddings that require grad ("functions with out=... don't
    support automatic differentiation")."""
    X = torch.randn(20, 3, 5, requires_grad=True)
    with pytest.raises(ValueError, match=r"unlabeled requires grad: .*pass unlabeled.detach\(\)"):
        fm.select_batch(X, 3, backend=backend)
    with pytest.raises(ValueError, match="pool_emb requires grad"):
        fm.select_from_pool(X, 3, torch.zeros(20, dtype=torch.bool), backend=backend)
    with pytest.raises(ValueError, match="labeled requires grad"):
        fm.select_batch(X.detach(), 3, labeled=X, backend=backend)
    assert fm.select_batch(X.detach(), 3, backend=backend).shape == (3,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model(dtype):
    """Item 8: "a must be float32 or float64", an internal argument name."""
    model = _mlp().to(dtype)
    with pytest.raises(TypeError, match=rf"model's parameters are {dtype}: "
                                        r".*pass model.float\(\)"):
        fm.masked_grad_embeddings(model, torch.randn(6, 12, dtype=dtype), _mask(model))


def test_float64_pool_with_float32_model():
    """Item 8: a raw "mat1 and mat2 must have the same dtype"."""
    model = _mlp()
    with pytest.raises(TypeError, match=r"data is torch.float64 but the model's parameters are "
                                        r"torch.float32; convert with data.to\(torch.float32\) "
                                        r"or model.to\(torch.float64\)"):
        fm.masked_grad_embeddings(model, torch.randn(6, 12, dtype=torch.float64), _mask(model))
    with pytest.raises(TypeError, match=r"data is torch.float16 .*data.to\(torch.float32\)$"):
        fm.masked_grad_embeddings(model, torch.randn(6, 12).half(), _mask(model))


def test_numpy_memmap_as_out(tmp_path):
    """Item 8: a raw np.memmap as out= (today a confusing shape/dtype message)."""
    model, x = _mlp(), torch.randn(6, 12)
    mask = _mask(model)
    mm = np.lib.format.open_memmap(tmp_path / "emb.npy", mode="w+", dtype=np.float32,
                                   shape=(6, 3, 5))
    with pytest.raises(TypeError, match=r"got a numpy.memmap; wrap an array with "
                                        r"out=torch.from_numpy\(array\)"):
        fm.masked_grad_embeddings(model, x, mask, out=mm)
    got = fm.masked_grad_embeddings(model, x, mask, out=torch.from_numpy(mm))
    assert torch.equal(torch.from_numpy(np.asarray(mm)), got)
    want = fm.masked_grad_embeddings(model, x, mask)
    torch.testing.assert_close(got, want, **tol(torch.float32, terms=network_terms(model, x),
                                                magnitude=want))


@pytest.mark.parametrize("name", ["fishermask", "bait", "entropy", "badge", "coreset", "random"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8, torch.int64])
def test_strategy_select_names_a_pool_of_another_dtype(name, dtype):
    """Issue 24, item 11: float64 or integer images into a float32 model gave torch's
    "mat1 and mat2 must have the same dtype" (random accepted them without a look)."""
    from fishermask_ext import strategies
    model, pool = _mlp(), torch.randn(20, 12)
    labeled = torch.arange(20) < 5
    strategy = strategies.get(name, seed=0)
    fix = r"pool.to\(torch.float32\)" + ("" if dtype.is_floating_point else " / 255")
    with pytest.raises(TypeError, match=rf"pool is {dtype} but the model.* {fix}"):
        strategy.select(model, (pool * 10).to(dtype), labeled, 3)
    assert len(strategy.select(model, pool, labeled, 3)) == 3


def test_embeddings_of_no_images():
    """Issue 24, item 11: masked_grad_embeddings(model, imgs[:0], mask) was a reshape error."""
    model = _mlp()
    with pytest.raises(ValueError, match="masked_grad_embeddings: data holds no samples"):
        fm.masked_grad_embeddings(model, torch.randn(4, 12)[:0], _mask(model))
