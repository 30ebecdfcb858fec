"""The reference training rule: crop and flip, gradient clamp, BatchNorm kept across rounds,
the untrained first query."""
import pytest
import torch
from torch import nn

from fishermask_ext import MLP
from fishermask_ext.al import config, loop, training
from fishermask_ext.al.training import CROP_PADDING, crop_flip, reset_conv_linear
from fishermask_ext.testing import tol


def test_crop_flip_is_a_padded_crop_or_its_mirror_of_each_image():
    x = torch.randn(6, 3, 7, 5)
    out = crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = nn.functional.pad(x, (CROP_PADDING,) * 4)
    span = 2 * CROP_PADDING + 1
    kinds = set()
    for i in range(len(x)):
        found = [(t, l, f) for t in range(span) for l in range(span) for f in (False, True)
                 if torch.equal(out[i], (lambda c: c.flip(-1) if f else c)(
                     padded[i, :, t:t + 7, l:l + 5]))]
        assert found, f"image {i} is no crop of its padded input"
        kinds.add(found[0][2])
    assert kinds == {False, True}           # both flipped and unflipped images occur here
    again = crop_flip(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


@pytest.mark.parametrize("clamp", [None, 0.1])
def test_grad_clamp_bounds_every_step(clamp):
    torch.manual_seed(0)
    model = MLP(in_features=4, num_classes=3, hidden=(5,))
    before = [p.detach().clone() for p in model.parameters()]
    cfg = config.default_config(epochs=1, batch_size=8, optimizer="sgd", lr=1.0,
                                grad_clamp=clamp)
    x, y = 50 * torch.randn(8, 4), torch.arange(8) % 3    # large inputs: large gradients
    training.train_model(model, x, y, cfg, torch.Generator())
    # One SGD step of lr 1 from a zero momentum buffer moves each weight by its gradient.
    step = max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before))
    if clamp is None:
        assert step > 0.1
    else:      # p − 0.1, then its difference to p: roundings at p's scale
        scale = max(float(b.abs().max()) for b in before) + 0.1
        assert step <= 0.1 + tol(torch.float32, magnitude=scale)["atol"]


def test_grad_clamp_must_be_positive():
    with pytest.raises(ValueError, match="'grad_clamp' must be > 0"):
        config.default_config(grad_clamp=0)


def test_reset_conv_linear_keeps_batchnorm():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
        model[1].running_mean.fill_(3.0)
    reset_conv_linear(model)
    assert not (model[0].weight == 0.5).all() and not (model[3].weight == 0.5).all()
    assert (model[1].weight == 0.5).all() and (model[1].running_mean == 3.0).all()


def _digits_cnn(**kw):
    return config.default_config(**{**dict(
        pool_size=150, test_size=60, model="small_cnn", model_options={"width": 2, "hidden": 8},
        strategies=["random"], initial=10, query=5, rounds=1, seeds=[0], epochs=3), **kw})


def _record_training(monkeypatch):
    """[(state at entry, state at exit)] of every train_model call."""
    seen, real = [], loop.train_model

    def recording(model, *args):
        entry = {k: v.clone() for k, v in model.state_dict().items()}
        out = real(model, *args)
        seen.append((entry, {k: v.clone() for k, v in model.state_dict().items()}))
        return out
    monkeypatch.setattr(loop, "train_model", recording)
    return seen


def test_keep_batchnorm_carries_batchnorm_and_resets_the_rest(tmp_path, monkeypatch):
    seen = _record_training(monkeypatch)
    loop.run_experiment(_digits_cnn(keep_batchnorm=True), str(tmp_path / "keep"),
                        progress=False)
    (start0, end0), (start1, _) = seen
    model = training.build_model("small_cnn", (1, 8, 8), 10, {"width": 2, "hidden": 8})
    norms = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    bn = [k for k in start1 if k.rpartition(".")[0] in norms]
    other = [k for k in start1 if k.endswith("weight") and k not in bn]   # Conv and Linear
    assert bn and other
    assert all(torch.equal(start1[k], end0[k]) for k in bn)
    assert not any(torch.equal(start1[k], end0[k]) or torch.equal(start1[k], start0[k])
                   for k in other)
    seen.clear()
    loop.run_experiment(_digits_cnn(), str(tmp_path / "reset"), progress=False)
    (start0, _), (start1, _) = seen        # the default: every round from the initial state
    assert all(torch.equal(start0[k], start1[k]) for k in start0)


def test_untrained_first_query(tmp_path, monkeypatch, spy_select):
    seen = {}

    def recording(name, select, model, *args):
        seen.setdefault(name, []).append({k: v.clone() for k, v in model.state_dict().items()})
        return select(model, *args)
    spy_select(recording)
    starts = _record_training(monkeypatch)
    cfg = _digits_cnn(strategies=["random", "entropy"], untrained_first_query=["entropy"])
    loop.run_experiment(cfg, str(tmp_path / "x"), progress=False)
    (r_start, r_end), _, (e_start, e_end), _ = starts      # random's two rounds, then entropy's
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)   # noqa: E731
    # The last query of each: the loop's round 0 (the warm-up before it queries too).
    assert same(seen["entropy"][-1], e_start) and not same(seen["entropy"][-1], e_end)
    assert same(seen["random"][-1], r_end) and not same(seen["random"][-1], r_start)
    with pytest.raises(ValueError,
                       match="every item of untrained_first_query must be one of 'badge'"):
        loop.run_experiment(_digits_cnn(untrained_first_query=["bald"]), str(tmp_path / "y"),
                            progress=False)
