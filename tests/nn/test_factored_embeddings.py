"""masked_grad_embeddings(..., factored=...): the factors' .dense() is the dense path's result,
column for column, on MLPs and the narrow ResNet-18; the classifier block costs no backward
pass; masks and models that are not one outer product per class are refused or fall back."""
import pytest
import torch
from torch import nn

from fishermask_ext import FactoredEmbeddings, select_batch
from fishermask_ext.nn import MLP, ParamMask, ResNet18Narrow, fisher_mask, masked_grad_embeddings
from fishermask_ext.testing import greedy_terms, tol

N_IMG = 6     # narrow ResNet-18 images (float64): the whole module's ResNet work


def _close(f, d):
    """f.dense() equals d up to one rounding of the dtype (the same products, G·h̄)."""
    assert isinstance(f, FactoredEmbeddings) and f.dtype == d.dtype
    got = f.dense()
    assert got.shape == d.shape
    torch.testing.assert_close(got, d, **tol(d.dtype, magnitude=d))


def _mlp(bias=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = MLP(in_features=6, num_classes=4, hidden=(5,))
    if not bias:
        model.linear = nn.Linear(5, 4, bias=False)
    return model.to(dtype).eval()


def _mask(model, bias=True, body=(0, 3, 7)):
    """The whole classifier weight (and its bias if `bias`) plus `body` entries of the hidden
    layer's weight."""
    params = dict(model.named_parameters())
    pos = {"linear.weight": torch.arange(params["linear.weight"].numel())}
    if bias and "linear.bias" in params:
        pos["linear.bias"] = torch.arange(params["linear.bias"].numel())
    if body:
        pos["features.1.weight"] = torch.tensor(body)
    return ParamMask(model, pos)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("weighting", ["sqrt_p", "none"])
@pytest.mark.parametrize("case", ["bias masked", "bias unmasked", "no bias", "head only"])
def test_mlp_factored_equals_dense(case, weighting, dtype):
    model = _mlp(bias=case != "no bias", dtype=dtype)
    mask = _mask(model, bias=case in ("bias masked", "head only"),
                 body=() if case == "head only" else (0, 3, 7))
    x = torch.randn(9, 6, dtype=dtype)
    dense = masked_grad_embeddings(model, x, mask, weighting=weighting, batch_size=4)
    fac = masked_grad_embeddings(model, x, mask, weighting=weighting, batch_size=4,
                                 factored=True)
    _close(fac, dense)
    d_bar = 6 if case in ("bias masked", "head only") else 5
    assert fac.G.shape == (9, 4, 4) and fac.H.shape == (9, d_bar)
    if case == "head only":
        assert fac.R is None
    else:       # R holds the other parameters' columns, bit for bit (the same dense path)
        assert torch.equal(fac.R, dense[:, :, mask.columns("features.1.weight")])


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = ResNet18Narrow(num_classes=10)
    x = torch.randn(2 * N_IMG, 3, 32, 32)
    with torch.no_grad():
        model.train()(x * 2 + 0.5)           # non-trivial BatchNorm statistics
    model, x = model.eval(), x[:N_IMG]
    # Step A in float32 on two images (a mask holds names, shapes and positions, the same for
    # the float64 model): the whole classifier plus 122 body entries, as in the paper.
    fm = fisher_mask(model, x, pct_top=0.002, n_samples=2)
    bait = ParamMask(model, {"linear.weight": torch.arange(1280)})
    return model.double(), x.double(), {"bait": bait, "fishermask": fm}


@pytest.fixture(scope="module")
def pools(resnet):
    """{source: (dense, factored)} embeddings of real float64 models, both paths."""
    model, x, masks = resnet
    out = {which: tuple(masked_grad_embeddings(model, x, masks[which], batch_size=4,
                                               factored=f) for f in (False, True))
           for which in masks}
    mlp = _mlp(seed=1)
    xm = torch.randn(24, 6, dtype=torch.float64)
    out["mlp"] = tuple(masked_grad_embeddings(mlp, xm, _mask(mlp), factored=f)
                       for f in (False, True))
    return out


@pytest.mark.parametrize("which", ["bait", "fishermask"])
def test_resnet_factored_equals_dense(resnet, pools, which):
    model, x, masks = resnet
    dense, fac = pools[which]
    _close(fac, dense)
    assert fac.d_bar == 128                  # bias-free head: h̄ = h
    assert (fac.columns is None) == (which == "bait")   # BAIT's dense order is the natural one
    assert fac.d_rest == (0 if which == "bait" else len(masks[which]) - 1280)


def test_classifier_only_runs_no_backward_pass(monkeypatch):
    model, x = _mlp(), torch.randn(5, 6, dtype=torch.float64)
    mask = _mask(model, body=())

    def boom(*args, **kwargs):
        raise AssertionError("a backward pass ran")
    monkeypatch.setattr(torch.autograd, "grad", boom)
    monkeypatch.setattr(torch.Tensor, "backward", boom)
    fac = masked_grad_embeddings(model, x, mask, factored=True)
    assert fac.R is None and not fac.requires_grad
    with pytest.raises(AssertionError, match="a backward pass ran"):   # the patch does bite
        masked_grad_embeddings(model, x, _mask(model), factored=True)


def test_auto_factors_when_it_can():
    model, x = _mlp(), torch.randn(5, 6, dtype=torch.float64)
    assert isinstance(masked_grad_embeddings(model, x, _mask(model), factored="auto"),
                      FactoredEmbeddings)
    # A preallocated dense out asks for the dense rows.
    out = torch.empty(5, 4, len(_mask(model)), dtype=torch.float64)
    assert masked_grad_embeddings(model, x, _mask(model), factored="auto", out=out) is out


class Scaled(nn.Module):
    """The logits are the classifier's output halved: not its outer product."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        return self.linear(x) / 2


class Twice(nn.Module):
    """The classifier also runs on a second input (returned beside the logits)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        return self.linear(x), self.linear(x.flip(1))


def _whole(model):
    return ParamMask(model, {n: torch.arange(p.numel()) for n, p in model.named_parameters()})


@pytest.mark.parametrize("model, why", [
    (Scaled(), "not the output of the masked nn.Linear"),
    (Twice(), "'linear' ran 2 times in one forward pass"),
])
def test_not_an_outer_product_refused_or_dense(model, why):
    model, x = model.double(), torch.randn(5, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"factored=True: .*{why}.*pass factored=False"):
        masked_grad_embeddings(model, x, _whole(model), factored=True)
    got = masked_grad_embeddings(model, x, _whole(model), factored="auto", batch_size=2)
    assert isinstance(got, torch.Tensor)
    assert torch.equal(got, masked_grad_embeddings(model, x, _whole(model), batch_size=2))


@pytest.mark.parametrize("positions, why", [
    ({"linear.weight": torch.arange(10)}, "holds 10 of the 20 entries of 'linear.weight'"),
    ({"linear.weight": torch.arange(20), "linear.bias": [1]},
     "holds 1 of the 4 entries of 'linear.bias'"),
    ({"features.1.weight": [0, 1]}, "holds no whole nn.Linear weight"),
])
def test_partial_classifier_mask_refused(positions, why):
    model, x = _mlp(), torch.randn(5, 6, dtype=torch.float64)
    mask = ParamMask(model, positions)
    with pytest.raises(ValueError, match=f"factored=True: the mask {why}.*factored=False"):
        masked_grad_embeddings(model, x, mask, factored=True)
    dense = masked_grad_embeddings(model, x, mask)
    assert torch.equal(masked_grad_embeddings(model, x, mask, factored="auto"), dense)


def test_bad_arguments():
    model = _mlp()
    mask, x = _mask(model), torch.randn(5, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="factored must be one of True, False, 'auto', got 1"):
        masked_grad_embeddings(model, x, mask, factored=1)
    with pytest.raises(ValueError, match="out: a preallocated tensor .* factored=True"):
        masked_grad_embeddings(model, x, mask, factored=True,
                               out=torch.empty(5, 4, len(mask), dtype=torch.float64))
    with pytest.raises(TypeError, match="data is torch.float32 but the model's parameters"):
        masked_grad_embeddings(model, x.float(), mask, factored=True)
    with pytest.raises(ValueError, match="the model has no nn.Linear classifier"):
        conv = nn.Sequential(nn.Conv1d(1, 2, 6), nn.Flatten()).double()
        masked_grad_embeddings(conv, x[:, None], _whole(conv), factored=True)


# The whole grid on the MLP; on the narrow ResNet-18 (D = 1,280 and 1,402, where every
# selection pays O(D³) factorisations) BAIT's setting without labels and FisherMask's with.
GRID = [("mlp", lab, b, lamb) for lab in (False, True) for b in (0, 1) for lamb in (1.0, 0.01)]
GRID += [(which, lab, b, lamb) for which in ("bait", "fishermask")
         for lab, b, lamb in ((False, 1, 0.01), (True, 0, 1.0))]


@pytest.mark.parametrize("which, labeled, backward_steps, lamb", GRID)
def test_select_factored_same_picks_as_dense(pools, which, labeled, backward_steps, lamb):
    dense, fac = pools[which]
    n_lab = len(dense) // 3 if labeled else 0       # the first rows are the labeled points
    K = 2 if which != "mlp" else 5
    opts = dict(backward_steps=backward_steps, lamb=lamb, return_gains=True)
    want = select_batch(dense[n_lab:], K, labeled=dense[:n_lab] if labeled else None, **opts)
    got = select_batch(fac[n_lab:], K, labeled=fac[:n_lab] if labeled else None, **opts)
    assert got[0].tolist() == want[0].tolist()
    steps = K * (2 * backward_steps + 1)           # forward K·(b + 1), then backward down to K
    _, C, D = dense.shape
    torch.testing.assert_close(got[1], want[1], **tol(torch.float64, magnitude=want[1],
                                                      terms=greedy_terms(D, C, steps)))
