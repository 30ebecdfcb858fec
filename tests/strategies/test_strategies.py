"""Query strategies: valid, unique, unlabeled, deterministic picks; each against a hand oracle."""
import math

import pytest
import torch
from torch import nn

from fishermask_ext import ResNet18Narrow, select_batch
from fishermask_ext import strategies
from fishermask_ext.strategies.fisher import auto_pct

N, C = 60, 4      # the `setup` fixture's pool (conftest.py)


def _opts(name):
    return {"n_samples": 32} if name.startswith("fishermask") else {}


@pytest.mark.parametrize("name", strategies.available())
def test_picks_valid_unique_unlabeled_deterministic(setup, name):
    model, pool, labeled = setup
    model.train()
    picks = strategies.get(name, seed=3, **_opts(name)).select(model, pool, labeled, 7)
    assert picks.dtype == torch.long and picks.shape == (7,)
    assert len(picks.unique()) == 7 and not labeled[picks].any()
    assert ((picks >= 0) & (picks < N)).all()
    again = strategies.get(name, seed=3, **_opts(name)).select(model, pool, labeled, 7)
    assert torch.equal(picks, again)
    assert model.training   # the caller's mode is restored


@pytest.mark.parametrize("name", strategies.available())
def test_budget_checks(setup, name):
    model, pool, labeled = setup
    s = strategies.get(name, **_opts(name))
    with pytest.raises(ValueError, match="between 1 and the 50 unlabeled"):
        s.select(model, pool, labeled, 51)
    with pytest.raises(ValueError, match="budget"):
        s.select(model, pool, labeled, 0)
    everything = s.select(model, pool, labeled, 50)   # the whole unlabeled pool is allowed
    assert sorted(everything.tolist()) == (~labeled).nonzero().flatten().tolist()


def test_registry_errors():
    with pytest.raises(ValueError,
                       match="strategy must be one of 'badge', 'bait', 'coreset', 'entropy'"):
        strategies.get("bald")
    with pytest.raises(TypeError, match="no option pct_top; its options: batch_size, device"):
        strategies.get("entropy", pct_top=0.1)
    assert strategies.get("fishermask", pct_top=0.1, lamb=0.5).lamb == 0.5


def test_random_depends_on_seed(setup):
    model, pool, labeled = setup
    a = strategies.get("random", seed=0).select(model, pool, labeled, 10)
    b = strategies.get("random", seed=1).select(model, pool, labeled, 10)
    assert not torch.equal(a, b)


def _lookup_model(logits):
    """A model whose output for one-hot input i is logits[i]."""
    model = nn.Linear(len(logits), logits.shape[1], bias=False)
    with torch.no_grad():
        model.weight.copy_(logits.T)
    return model


@pytest.mark.parametrize("name,score", [
    ("entropy", lambda p: -(p * p.log()).sum(1)),
    ("margin", lambda p: -(p.topk(2, 1).values[:, 0] - p.topk(2, 1).values[:, 1])),
    ("least_confidence", lambda p: -p.max(1).values),
])
def test_uncertainty_scores(name, score):
    torch.manual_seed(1)
    logits = torch.randn(30, 5) * 2
    labeled = torch.zeros(30, dtype=torch.bool)
    labeled[::3] = True
    picks = strategies.get(name).select(_lookup_model(logits), torch.eye(30), labeled, 6)
    s = score(logits.softmax(1)).masked_fill(labeled, -math.inf)
    assert picks.tolist() == s.argsort(descending=True)[:6].tolist()


def test_features_from_tuple_output_equal_hook_features(setup):
    model, pool, labeled = setup
    view = strategies.PoolView(model, pool, labeled, 0, 16, torch.device("cpu"))
    probs, feats = view.forward(torch.arange(N))
    model.return_embedding = True
    probs2, feats2 = view.forward(torch.arange(N))
    assert torch.equal(probs, probs2) and torch.equal(feats, feats2)
    assert feats.shape == (N, 8)


def test_badge_matches_materialised_kmeanspp(setup):
    model, pool, labeled = setup
    picks = strategies.get("badge", seed=5).select(model, pool, labeled, 8)
    view = strategies.PoolView(model.eval(), pool, labeled, 5, 256, torch.device("cpu"))
    p, h = (t.double() for t in view.forward(view.unlabeled))
    g = (p - torch.eye(C, dtype=torch.float64)[p.argmax(1)])[:, :, None] * h[:, None, :]
    g = g.flatten(1)                                     # the embedding BADGE materialises
    chosen = [int(g.norm(dim=1).argmax())]
    while len(chosen) < 8:
        d2 = torch.cdist(g, g[chosen]).min(1).values ** 2
        d2[chosen] = 0
        chosen.append(int(torch.multinomial(d2 / d2.sum(), 1, generator=view.generator)))
    assert picks.tolist() == view.unlabeled[chosen].tolist()


def test_coreset_is_k_center_greedy(setup):
    model, pool, labeled = setup
    picks = strategies.get("coreset").select(model, pool, labeled, 5)
    view = strategies.PoolView(model.eval(), pool, labeled, 0, 256, torch.device("cpu"))
    feats = view.forward(torch.arange(N))[1].double()
    centres = labeled.nonzero().flatten().tolist()
    for pick in picks.tolist():
        dist = torch.cdist(feats, feats[centres]).min(1).values
        assert pick == int(dist.argmax())
        centres.append(pick)


def test_bait_is_select_batch_on_sqrt_p_last_layer_embeddings(setup):
    model, pool, labeled = setup
    picks = strategies.get("bait", lamb=0.1).select(model, pool, labeled, 6)
    view = strategies.PoolView(model.eval(), pool, labeled, 0, 256, torch.device("cpu"))
    p, h = view.forward(torch.arange(N))
    rows = p.sqrt()[:, :, None] * (torch.eye(C) - p[:, None, :])       # sqrt(p_c)(e_c - p)
    emb = (rows[:, :, :, None] * h[:, None, None, :]).flatten(2)        # [N, C, C·H]
    want = select_batch(emb[view.unlabeled], 6, labeled=emb[view.labeled], lamb=0.1,
                        backward_steps=1)
    assert picks.tolist() == view.unlabeled[want].tolist()


def test_fishermask_auto_pct_reaches_past_the_classifier(setup):
    model = setup[0]
    total = sum(p.numel() for p in model.parameters())
    n_last = C * 8 + C
    assert int(auto_pct(model) * total) == n_last + round(0.1 * n_last)


@pytest.mark.parametrize("classes, d", [(10, 1402), (4, 1401)])
def test_fishermask_auto_pct_is_the_papers_on_the_narrow_resnet(classes, d):
    # REFERENCE-PROTOCOL's D at pct 0.002 (1,280 + 122 and 512 + 889): 0.002 already reaches
    # past the classifier there, so pct_top=None must not raise it (at C = 10 the 10 % body
    # share would have given 1,408 and both variants would have differed from the code).
    model = ResNet18Narrow(num_classes=classes)
    total = sum(p.numel() for p in model.parameters())
    assert auto_pct(model) == 0.002 and int(auto_pct(model) * total) == d


def test_bait_rejects_mask_options():
    with pytest.raises(TypeError, match="do not apply"):
        strategies.get("bait", pct_top=0.01)


def _fishermask_inputs(setup, **options):
    """(strategy, view, embeddings of the whole pool) as FisherMask.choose computes them."""
    from fishermask_ext import masked_grad_embeddings
    model, pool, labeled = setup
    strat = strategies.get("fishermask", n_samples=32, **options)
    view = strategies.PoolView(model.eval(), pool, labeled, 0, 256, torch.device("cpu"))
    emb = masked_grad_embeddings(model, pool, strat.mask(view), weighting=strat.weighting)
    return strat, view, emb


def test_fishermask_fish_identity_is_the_a_optimal_design(setup):
    strat, view, emb = _fishermask_inputs(setup, fish_identity=True)
    picks = strat.select(*setup, 6)
    eye = torch.eye(emb.shape[2], dtype=torch.float64)
    want = select_batch(emb[view.unlabeled], 6, labeled=emb[view.labeled], pool_fisher=eye)
    assert picks.tolist() == view.unlabeled[want].tolist()


def test_fishermask_without_fish_init_leaves_labeled_out_of_m(setup):
    from fishermask_ext import fisher_matrix
    strat, view, emb = _fishermask_inputs(setup, fish_init=False)
    picks = strat.select(*setup, 6)
    D, n_L = emb.shape[2], len(view.labeled)
    zero = torch.zeros(D, D, dtype=torch.float64)
    want = select_batch(emb[view.unlabeled], 6, labeled_fisher=zero, n_labeled=n_L,
                        pool_fisher=fisher_matrix(emb))
    assert picks.tolist() == view.unlabeled[want].tolist()
    # On this pool the labeled points' Fisher changes the batch: the switch is not a no-op.
    assert picks.tolist() != strategies.get("fishermask", n_samples=32).select(*setup, 6).tolist()


def test_fishermask_switches_must_be_bools():
    with pytest.raises(TypeError, match="fish_init must be True or False"):
        strategies.get("fishermask", fish_init=1)


def test_fishermask_parity_reaches_select_batch(setup):
    strat, view, emb = _fishermask_inputs(setup, parity=True)
    picks = strat.select(*setup, 6)
    want = select_batch(emb[view.unlabeled], 6, labeled=emb[view.labeled], parity=True)
    assert picks.tolist() == view.unlabeled[want].tolist()


# The documented switches of FisherMask's two variants (README, docs/ALGORITHM.md).
SWITCHES = {"default": dict(weighting="sqrt_p", parity=False, reference_order=False),
            "reference": dict(weighting="none", parity=True, reference_order=True)}


def _settings(strategy):
    return {k: v for k, v in vars(strategy).items() if k != "variant"}


def test_fishermask_variants_differ_exactly_in_the_documented_switches(setup):
    default = strategies.get("fishermask", n_samples=32)
    reference = strategies.get("fishermask", variant="reference", n_samples=32)
    a, b = _settings(default), _settings(reference)
    assert {k for k in a if a[k] != b[k]} == set(SWITCHES["default"])
    assert {k: a[k] for k in SWITCHES["default"]} == SWITCHES["default"]
    assert {k: b[k] for k in SWITCHES["reference"]} == SWITCHES["reference"]
    # Picks: each variant with the other's switches given explicitly is the other variant.
    as_default = strategies.get("fishermask", variant="reference", n_samples=32,
                                **SWITCHES["default"])
    as_reference = strategies.get("fishermask", n_samples=32, **SWITCHES["reference"])
    assert _settings(as_default) == a and _settings(as_reference) == b
    picks = {name: s.select(*setup, 6).tolist() for name, s in
             (("default", default), ("reference", reference), ("as_default", as_default),
              ("as_reference", as_reference))}
    assert picks["default"] == picks["as_default"]
    assert picks["reference"] == picks["as_reference"]
    assert picks["default"] != picks["reference"]      # the switches are not a no-op here
    named = strategies.get("fishermask_reference", n_samples=32)
    assert _settings(named) == b and named.select(*setup, 6).tolist() == picks["reference"]


def test_fishermask_explicit_options_override_the_variant():
    s = strategies.get("fishermask", variant="reference", weighting="sqrt_p")
    assert (s.weighting, s.parity, s.reference_order) == ("sqrt_p", True, True)
    s = strategies.get("fishermask_reference", parity=False, lamb=0.5)
    assert (s.weighting, s.parity, s.reference_order, s.lamb) == ("none", False, True, 0.5)
    with pytest.raises(ValueError, match="variant must be one of 'default', 'reference'"):
        strategies.get("fishermask", variant="published")
    with pytest.raises(TypeError, match="reference_order must be True or False"):
        strategies.get("fishermask", reference_order="yes")
    with pytest.raises(TypeError, match="use 'fishermask' to choose another variant"):
        strategies.get("fishermask_reference", variant="default")
    with pytest.raises(TypeError, match="variant do not apply"):
        strategies.get("bait", variant="reference")


# Picks of strategies.get("fishermask", n_samples=N, seed=5, **options) on `setup` at 9b3f8d6,
# the commit before the variants (row weight "none" was its default; parity=True gave the same
# picks there). Written down then, so a change in steps A-E that moves both sides of the test
# below still fails here.
PICKS_BEFORE_THE_VARIANTS = [({}, [10, 46, 32, 3, 50, 14]),
                             ({"lamb": 0.1}, [30, 10, 25, 32, 54, 29]),
                             ({"pct_top": 0.5}, [10, 46, 47, 50, 54, 28])]


@pytest.mark.parametrize("options, picks", PICKS_BEFORE_THE_VARIANTS)
def test_fishermask_reference_variant_equals_the_picks_before_the_variants(setup, options,
                                                                             picks):
    ref = strategies.get("fishermask", variant="reference", n_samples=N, seed=5, **options)
    assert ref.select(*setup, 6).tolist() == picks


def test_fishermask_reference_variant_equals_todays_picks(setup):
    """The reference variant is the pipeline the code ran before the default changed: the
    same steps A-E called with today's explicit options (row weight "none", parity rounding,
    step A on the first n_samples pool points)."""
    from fishermask_ext import fisher_mask, masked_grad_embeddings
    model, pool, labeled = setup
    seed, n_samples = 5, 32
    view = strategies.PoolView(model.eval(), pool, labeled, seed, 256, torch.device("cpu"))
    mask = fisher_mask(model, pool, pct_top=auto_pct(model), n_samples=n_samples, seed=seed,
                       reference_order=True)
    emb = masked_grad_embeddings(model, pool, mask, weighting="none")
    want = select_batch(emb[view.unlabeled], 6, labeled=emb[view.labeled], lamb=1.0,
                        backward_steps=0, parity=True)
    ref = strategies.get("fishermask", variant="reference", n_samples=n_samples, seed=seed)
    assert ref.select(*setup, 6).tolist() == view.unlabeled[want].tolist()
    assert ref.mask(view) == mask
    # The storage-order sample is not the seeded one on this pool, so the switch is wired.
    assert strategies.get("fishermask", n_samples=n_samples, seed=seed).mask(view) != mask
    # With step A over the whole pool both samples are every point: the reference variant is
    # then exactly the strategy built with the options that existed before the variants.
    whole = dict(n_samples=N, seed=seed)
    today = strategies.get("fishermask", weighting="none", parity=True, **whole)
    assert (strategies.get("fishermask", variant="reference", **whole).select(*setup, 6).tolist()
            == today.select(*setup, 6).tolist())
