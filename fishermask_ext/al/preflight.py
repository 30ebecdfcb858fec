"""What run_experiment does before it writes anything: check every name, option and device,
build the model on the data, and warm up.

A failed start must not leave a folder that blocks the corrected retry, so every check that
can fail runs here, before the results folder is touched: `check_experiment` (no data needed)
and `warm_up` (on the loaded data: the model is built and trained, every strategy queries once,
on a small slice). The warm-up also pays the one-time costs (thread pools, first kernel calls,
lazy imports) that would otherwise be charged to the first strategy's timed round.
"""
import torch

from .._checks import check_choice, check_device
from ..nn import MODELS
from .. import strategies
from .data import num_classes
from .training import build_model, evaluate, train_model

__all__ = ["check_experiment", "warm_up", "WARM_UP_POOL"]

WARM_UP_POOL = 64     # points of the warm-up slice: enough for a few batches and a query


def check_experiment(config):
    """Raise a ValueError/TypeError naming the setting and the fix for any bad name, option or
    device of a checked config (config.default_config); no data is loaded."""
    check_device(config["device"], "device (--device)")
    check_choice(config["model"], "model (--model)", sorted(MODELS))
    unused = sorted(set(config["strategy_options"]) - set(config["strategies"]))
    if unused:
        raise ValueError(f"options are set for {', '.join(map(repr, unused))} (--set), which "
                         f"this run does not use; its strategies: "
                         f"{', '.join(config['strategies'])}")
    for name in config["untrained_first_query"]:
        check_choice(name, "every item of untrained_first_query", strategies.available())
    for name in config["strategies"]:   # unknown names, unknown options, bad option values
        try:
            strategies.get(name, **config["strategy_options"].get(name, {}))
        except (TypeError, ValueError) as exc:
            where = f" (--set {name}.KEY=VALUE)" if name in config["strategy_options"] else ""
            raise type(exc)(f"strategy {name!r}{where}: {exc}") from None


def warm_up(config, arrays):
    """Build the model for the data, train it one epoch, evaluate it and query once with every
    strategy, on the first WARM_UP_POOL pool points; nothing is kept and the global RNG state is
    restored (every round reseeds what it draws, so results do not depend on this)."""
    train_x, train_y, test_x, test_y = arrays
    n = min(len(train_y), WARM_UP_POOL)
    device = config["device"]
    with torch.random.fork_rng(devices=[]):
        model = build_model(config["model"], tuple(train_x.shape[1:]),
                            num_classes(train_y, test_y), config["model_options"]).to(device)
        _check_forward(model, train_x[:2].to(device), config)
        train_model(model, train_x[:n], train_y[:n], dict(config, epochs=1, train_accuracy=None),
                    torch.Generator().manual_seed(0))
        evaluate(model, test_x[:n], test_y[:n], device)
        labeled = torch.zeros(n, dtype=torch.bool)
        labeled[:max(1, min(config["initial"], n - 1))] = True
        budget = max(1, min(config["query"], n - int(labeled.sum())))
        for name in config["strategies"]:
            strategy = strategies.get(name, seed=0, device=device,
                                      **config["strategy_options"].get(name, {}))
            strategy.select(model, train_x[:n], labeled, budget)


def _check_forward(model, x, config):
    """One forward pass; a model that does not fit the data says so with its options."""
    try:
        with torch.no_grad():
            model.eval()(x)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"model {config['model']!r} with options {config['model_options']} "
                         f"does not run on inputs of shape {tuple(x.shape[1:])} from dataset "
                         f"{config['dataset']!r}: {str(exc).splitlines()[0]}; fix "
                         f"--model-option or pick another --model") from None
