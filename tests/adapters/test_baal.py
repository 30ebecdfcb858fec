"""baal: FisherHeuristic inside a real ActiveLearningLoop on a ModelWrapper, three rounds."""
import numpy as np
import pytest
import torch
pytest.importorskip("baal", reason="needs baal (the baal extra)")
from baal.active import ActiveLearningDataset, ActiveLearningLoop  # noqa: E402
from baal.modelwrapper import ModelWrapper, TrainingArgs  # noqa: E402
from torch import nn
from torch.utils.data import TensorDataset

from testing import check_picks
from fishermask_ext import ParamMask, masked_grad_embeddings, select_from_pool
from fishermask_ext.adapters.baal import FisherHeuristic, fisher_loop


def _setup(digits):
    X, y = digits
    torch.manual_seed(0)
    data = TensorDataset(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y))
    al_data = ActiveLearningDataset(data)
    al_data.label(list(range(20)))
    net = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 10))
    args = TrainingArgs(optimizer=torch.optim.SGD(net.parameters(), lr=0.5),
                        criterion=nn.CrossEntropyLoss(), epoch=3, batch_size=20, use_cuda=False,
                        workers=0)
    return data, al_data, ModelWrapper(net, args)


def _bait(net, x, labelled, k):      # BAIT by hand: last Linear weight, sqrt_p, λ = 0.01, 1 step
    mask = ParamMask(net, {"2.weight": torch.arange(120)})
    return select_from_pool(masked_grad_embeddings(net, x, mask, weighting="sqrt_p"), k,
                            torch.as_tensor(labelled), lamb=0.01, backward_steps=1).numpy()


@pytest.mark.parametrize("helper", [True, False])
def test_three_rounds(digits, helper):
    data, al_data, wrapper = _setup(digits)
    if helper:
        loop = fisher_loop(al_data, wrapper, query_size=7)
    else:             # the plain loop, fed baal's own predictions (only their length is read)
        loop = ActiveLearningLoop(al_data, wrapper.predict_on_dataset,
                                  FisherHeuristic(wrapper, al_data, 7), query_size=7,
                                  iterations=1, verbose=False)
    for _ in range(3):
        wrapper.train_on_dataset(al_data)
        before = al_data.labelled.copy()
        want = _bait(wrapper.model, data.tensors[0], before, 7)
        assert loop.step()
        new = np.flatnonzero(al_data.labelled & ~before)
        check_picks(new, before, 7)
        np.testing.assert_array_equal(loop.heuristic.last_picks, want)
        np.testing.assert_array_equal(np.sort(new), np.sort(want))


def test_ranks_scores_and_errors(digits):
    data, al_data, wrapper = _setup(digits)
    h = FisherHeuristic(wrapper, al_data, 5)
    n_pool = len(al_data.pool)
    ranks, scores = h.get_ranks(np.zeros((n_pool, 1)))
    assert sorted(ranks.tolist()) == list(range(n_pool))          # a permutation of the pool
    assert np.isfinite(scores).sum() == 5 and np.isfinite(scores[ranks[:5]]).all()
    again, _ = FisherHeuristic(wrapper, al_data, 5).get_ranks(np.zeros((n_pool, 1)))
    np.testing.assert_array_equal(ranks, again)
    with pytest.raises(ValueError, match="max_sample"):
        h.get_ranks(np.zeros((n_pool - 1, 1)))
    with pytest.raises(ValueError, match="kind"):
        FisherHeuristic(wrapper, al_data, 5, kind="badge")
