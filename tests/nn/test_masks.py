"""Steps A and B: ParamMask, random_mask, the Fisher diagonal (against a per-sample loop) and
the Fisher mask (against a brute-force top-k with ties)."""
import math
import re

import pytest
import torch
from torch import nn

from fishermask_ext import (MLP, ParamMask, ResNet18Narrow, SmallCNN, fisher_diagonal,
                            fisher_mask, random_mask)
from fishermask_ext.testing import loop_fisher_diagonal

from testing import ReuseNet, assert_fisher_equal


def _small_cnn():
    return _warmed(lambda: SmallCNN(in_channels=2, num_classes=4, input_size=6, width=4, hidden=6),
                   (7, 2, 6, 6))


def _warmed(make, shape):
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():                      # non-trivial BatchNorm running statistics
        model.train()(x * 2 + 0.5)
    return model.eval(), x


def test_mask_columns_follow_parameter_order_then_position():
    model = MLP(in_features=4, num_classes=3, hidden=(5,))
    mask = ParamMask(model, {"linear.bias": [2, 0], "features.1.weight": torch.tensor([7, 3, 7])})
    assert mask.names == ("features.1.weight", "linear.bias") and len(mask) == 4
    assert mask.positions("features.1.weight").tolist() == [3, 7]
    assert mask.columns("linear.bias") == slice(2, 4)
    tensors = {n: torch.stack([p.detach(), -p.detach()]) for n, p in model.named_parameters()}
    w, b = model.features[1].weight.detach().flatten(), model.linear.bias.detach()
    row = torch.stack([w[3], w[7], b[0], b[2]])
    expected = torch.stack([row, -row])
    assert torch.equal(mask.gather(tensors), expected)


def test_mask_rejects_bad_names_and_positions():
    model = MLP(in_features=4, num_classes=3, hidden=(5,))
    with pytest.raises(KeyError, match="'linear.weights' is not a parameter.*'linear.weight'"):
        ParamMask(model, {"linear.weights": [0]})
    with pytest.raises(IndexError, match="position 15 is out of range for parameter "
                                         "'linear.weight' with 15 entries"):
        ParamMask(model, {"linear.weight": [0, 15]})
    with pytest.raises(IndexError, match="position -1"):
        ParamMask(model, {"linear.weight": [-1]})
    with pytest.raises(TypeError, match="must be integers"):
        ParamMask(model, {"linear.weight": [0.5]})


def test_mask_save_load_round_trip_and_model_check(tmp_path):
    model = ResNet18Narrow()
    mask = random_mask(model, 500, seed=3)
    mask.save(tmp_path / "r.pt")
    assert ParamMask.load(tmp_path / "r.pt", model) == mask
    mask = ParamMask(model, {"conv1.weight": [1, 4], "linear.weight": [0, 1279]})
    mask.save(tmp_path / "m.pt")
    assert ParamMask.load(tmp_path / "m.pt", model) == mask
    with pytest.raises(ValueError, match="not built for this model: parameter 'linear.weight'"):
        ParamMask.load(tmp_path / "m.pt", ResNet18Narrow(num_classes=4))
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a ParamMask file"):
        ParamMask.load(tmp_path / "other.pt", model)


def test_random_mask_is_seeded_uniform_over_all_positions():
    model = MLP(in_features=6, num_classes=3, hidden=(4,))       # 24 + 4 + 12 + 3 = 43
    flat = torch.randperm(43, generator=torch.Generator().manual_seed(5))[:20]
    starts = [0, 24, 28, 40]
    expected = {n: sorted(int(f) - s for f in flat if s <= f < s + p.numel())
                for (n, p), s in zip(model.named_parameters(), starts)}
    mask = random_mask(model, 20, seed=5)
    assert len(mask) == 20
    assert {n: mask.positions(n).tolist() for n in mask.names} == {
        n: v for n, v in expected.items() if v}
    assert random_mask(model, 20, seed=6) != mask
    with pytest.raises(ValueError, match=r"size must be in \[0, 43\]"):
        random_mask(model, 44)


@pytest.mark.parametrize("case", ["small_cnn", "reuse"])
def test_fisher_diagonal_equals_a_per_sample_loop(case):
    model, x = _small_cnn() if case == "small_cnn" else _warmed(ReuseNet, (5, 2, 9))
    fisher = fisher_diagonal(model, x, n_samples=100, batch_size=3)
    assert_fisher_equal(fisher, loop_fisher_diagonal(model, x), model, x)


def test_fisher_sample_is_the_documented_seeded_subset_or_the_first_ones():
    model, x = _small_cnn()
    idx = torch.randperm(7, generator=torch.Generator().manual_seed(11))[:4].sort().values
    for got, subset in [(fisher_diagonal(model, x, n_samples=4, seed=11), x[idx]),
                        (fisher_diagonal(model, x, n_samples=4, reference_order=True), x[:4])]:
        assert_fisher_equal(got, loop_fisher_diagonal(model, subset), model, subset)


def _brute_force_mask(model, fisher, n_top, always):
    """Sort every other entry by (-f, tensor index, flat position); keep the first ones."""
    params = list(model.named_parameters())
    entries = sorted((-float(fisher[n].flatten()[j]), t, j) for t, (n, p) in enumerate(params)
                     if n not in always for j in range(p.numel()))
    n_always = sum(p.numel() for n, p in params if n in always)
    chosen = {n: [j for _, t2, j in entries[:n_top - n_always] if t2 == t]
              for t, (n, _) in enumerate(params)}
    chosen.update({n: list(range(p.numel())) for n, p in params if n in always})
    return ParamMask(model, chosen)


def test_fisher_mask_matches_brute_force_top_k_with_ties():
    torch.manual_seed(0)
    model = MLP(in_features=6, num_classes=3, hidden=(5,)).double()   # 35 + 18 = 53 entries
    x = torch.randn(9, 6, dtype=torch.float64)
    x[:, :3] = 0                   # those weight columns get Fisher exactly 0: a 15-way tie
    fisher = fisher_diagonal(model, x, n_samples=9)
    assert int((fisher["features.1.weight"] == 0).sum()) >= 15
    for n_top, always in [(18 + 25, None), (18 + 35, None), (30, ["features.1.bias"])]:
        mask = fisher_mask(model, x, pct_top=min(1.0, (n_top + 0.5) / 53), n_samples=9,
                           always_include=always)
        expected = _brute_force_mask(model, fisher, n_top,
                                     always or ["linear.weight", "linear.bias"])
        assert mask == expected and len(mask) == n_top


def test_fisher_mask_names_the_smallest_pct_top_that_works():
    model = MLP(in_features=6, num_classes=3, hidden=(5,))
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match="does not exceed the 18 always-included") as info:
        fisher_mask(model, x, pct_top=0.3)
    smallest = float(re.search(r"smallest pct_top that works is ([0-9.e-]+)", str(info.value))[1])
    assert int(smallest * 53) == 19 and int(math.nextafter(smallest, 0) * 53) == 18
    assert len(fisher_mask(model, x, pct_top=smallest)) == 19
    with pytest.raises(ValueError, match="smallest pct_top"):
        fisher_mask(model, x, pct_top=math.nextafter(smallest, 0))
    with pytest.raises(KeyError, match="'fc.weight' is not a parameter"):
        fisher_mask(model, x, pct_top=0.5, always_include=["fc.weight"])


def test_fisher_mask_of_the_narrow_resnet_has_the_papers_size():
    model = ResNet18Narrow()
    mask = fisher_mask(model, torch.randn(4, 3, 32, 32), n_samples=4)
    assert len(mask) == 1402 and len(mask.positions("linear.weight")) == 1280


def test_fisher_rejects_modules_it_cannot_differentiate_per_sample():
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    with pytest.raises(TypeError, match=r"module '1' \(LayerNorm\)"):
        fisher_diagonal(model, torch.randn(3, 4))
