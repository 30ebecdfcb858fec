"""Strategy.select(..., return_gains=True): the same picks, and each pick's gain as the strategy
scores it (None for strategies without one); the pool and model forms every strategy takes."""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fishermask_ext import select_batch
from fishermask_ext import strategies
from fishermask_ext.testing import network_terms, tol

N, C = 60, 4      # the `setup` fixture's pool (conftest.py)
NO_GAINS = ("badge", "random")


def _get(name, **options):
    return strategies.get(name, seed=2, **({"n_samples": 16} if "fishermask" in name else {}),
                          **options)


@pytest.mark.parametrize("name", strategies.available())
def test_gains_come_with_the_same_picks(setup, name):
    picks, gains = _get(name).select(*setup, 5, return_gains=True)
    assert torch.equal(picks, _get(name).select(*setup, 5))
    if name in NO_GAINS:
        assert gains is None
    else:
        assert gains.dtype == torch.float64 and gains.shape == (5,)
        assert gains.device.type == "cpu" and not gains.isnan().any()
    with pytest.raises(TypeError, match="return_gains must be True or False"):
        _get(name).select(*setup, 5, return_gains=1)


def test_bait_gains_are_select_batchs(setup):
    model, pool, labeled = setup
    picks, gains = _get("bait").select(model, pool, labeled, 4, return_gains=True)
    view = strategies.PoolView(model.eval(), pool, labeled, 0, 256, torch.device("cpu"))
    p, h = view.forward(torch.arange(N))
    rows = p.sqrt()[:, :, None] * (torch.eye(C) - p[:, None, :])       # sqrt(p_c)(e_c - p)
    emb = (rows[:, :, :, None] * h[:, None, None, :]).flatten(2)
    want, want_gains = select_batch(emb[view.unlabeled], 4, labeled=emb[view.labeled],
                                    lamb=0.01, backward_steps=1, return_gains=True)
    assert picks.tolist() == view.unlabeled[want].tolist()
    # Both embeddings are float32, formed two ways (factored G ⊗ h there, the outer product
    # here): the gains agree to a few float32 roundings (each entry one apart, in forms of
    # degree 4 and their ratio: terms=9), not to float64's.
    torch.testing.assert_close(gains, want_gains, **tol(torch.float32, terms=9,
                                                        magnitude=want_gains))


@pytest.mark.parametrize("name, score", [
    ("entropy", lambda p: -(p * p.log()).sum(1)),
    ("margin", lambda p: p.topk(2, 1).values[:, 1] - p.topk(2, 1).values[:, 0]),
    ("least_confidence", lambda p: -p.max(1).values),
])
def test_uncertainty_gains_are_the_scores(setup, name, score):
    model, pool, labeled = setup
    picks, gains = _get(name).select(model, pool, labeled, 6, return_gains=True)
    p = model(pool.flatten(1)).softmax(1).double()
    # float32 logits (a forward pass, batched differently), the softmax and the score over C
    # classes (a log, a product: 2C + 2); |p log p| <= 1/e, so the score's terms are below C/e.
    torch.testing.assert_close(gains, score(p)[picks], **tol(
        torch.float32, terms=network_terms(model, pool) + 2 * C + 2, magnitude=C / math.e))
    assert (gains[:-1] >= gains[1:]).all()                       # ranked, larger first


def test_coreset_gains_are_the_pick_distances(setup):
    model, pool, labeled = setup
    picks, gains = _get("coreset").select(model, pool, labeled, 4, return_gains=True)
    view = strategies.PoolView(model.eval(), pool, labeled, 0, 256, torch.device("cpu"))
    feats = view.forward(torch.arange(N))[1].double()
    centres = labeled.nonzero().flatten().tolist()
    for pick, gain in zip(picks.tolist(), gains.tolist()):
        dist = torch.cdist(feats[pick:pick + 1], feats[centres]).min()
        # a squared distance over the features (2·F terms, |a|² + |b|² at most), its square root
        torch.testing.assert_close(torch.tensor(gain, dtype=torch.float64), dist, **tol(
            torch.float64, terms=2 * feats.shape[1] + 2,
            magnitude=feats.square().sum(1).max().sqrt()))
        centres.append(pick)


@pytest.mark.parametrize("name", ["fishermask", "bait"])
def test_fisher_strategies_take_a_dataset_or_dataloader(setup, name):
    model, pool, labeled = setup
    want = _get(name).select(model, pool, labeled, 5, return_gains=True)
    data = TensorDataset(pool, torch.zeros(N, dtype=torch.long))
    for form in (data, DataLoader(data, batch_size=7)):
        got = _get(name).select(model, form, labeled.numpy(), 5, return_gains=True)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


class _NoParameters(nn.Module):
    """Logits and features straight from the input: no parameters, no buffers."""

    def forward(self, x):
        x = x.flatten(1)[:, :C]
        return x, x


@pytest.mark.parametrize("name", ["random", "entropy", "coreset"])
def test_a_model_without_parameters_runs_on_the_cpu(setup, name):
    # next(model.parameters()) raised StopIteration here; nn.state.model_device decides.
    _, pool, labeled = setup
    picks = _get(name).select(_NoParameters(), pool, labeled, 3)
    assert len(picks.unique()) == 3 and not labeled[picks].any()


def test_select_checks_the_model_and_the_pool(setup):
    model, pool, labeled = setup
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        _get("random").select(lambda x: x, pool, labeled, 3)
    with pytest.raises(TypeError, match="pool must have a length"):
        _get("bait").select(model, iter(pool), labeled, 3)
    with pytest.raises(ValueError, match=r"labeled_mask must have shape \[N\] = \[60\]"):
        _get("random").select(model, pool, labeled[:-1], 3)
    with pytest.raises(ValueError, match="device 'gpu' is not a device name"):
        _get("random", device="gpu")
