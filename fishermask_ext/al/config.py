"""The experiment config: one schema of keys, types, defaults and help.

It feeds the three places a config appears: `default_config` (what run_experiment runs and saves
as config.json), the `fishermask run` flags (`add_arguments`, `from_args`) and the saved-config
comparison of --resume (`UNCHECKED`). A new setting is one `Option` here and nothing else.
"""
import argparse
import json
from typing import NamedTuple

from .._checks import check_bool, check_choice, check_fraction, check_int, check_number
from .data import POOL_ORDERS

__all__ = ["Option", "SCHEMA", "DEFAULTS", "UNCHECKED", "default_config", "add_arguments",
           "from_args"]


class Option(NamedTuple):
    """One config key. kind: "str", "int", "float", "fraction" (a float in [0, 1]), "bool",
    "ints" (comma list on the CLI), "names" (comma list), "options" (KEY=VALUE, repeatable) or
    "nested" (STRATEGY.KEY=VALUE).
    A "bool" flag flips the default (`flag` says which way, e.g. --keep-weights)."""
    key: str
    kind: str
    default: object
    help: str
    optional: bool = False       # None allowed (and the default means "not set")
    minimum: int = None          # for "int", "ints" and "float"
    choices: tuple = ()
    flag: str = None             # default: --key-with-dashes
    positive: bool = False       # for "float": must be > 0
    nonempty: bool = False       # for "names" and "ints": at least one item


SCHEMA = (
    Option("dataset", "str", "digits", "digits | fashion-mnist | cifar10 | torchvision:<Name>"),
    Option("data_dir", "str", None, "where the dataset files are", optional=True),
    Option("imbalance", "str", None, "per-class counts of the pool, e.g. "
           "0:250,1:5000,2:250,3:250", optional=True),
    Option("pool_size", "int", None, "random subset of the training images to use as the pool",
           optional=True, minimum=1),
    Option("test_size", "int", None, "random subset of the test images", optional=True,
           minimum=1),
    Option("pool_order", "str", "dataset", "order of the pool images: dataset (the source's) "
           "or class (sorted by label, the published code's)", choices=POOL_ORDERS),
    Option("split_seed", "int", 0, "seeds the train/test split and the random subsets"),
    Option("model", "str", "mlp", "mlp | small_cnn | resnet18_narrow"),
    Option("model_options", "options", {}, "model constructor option (repeatable)",
           flag="--model-option"),
    Option("strategies", "names", ["fishermask", "bait", "entropy", "random"], "comma list",
           nonempty=True),
    Option("strategy_options", "nested", {}, "strategy option, e.g. fishermask.pct_top=0.01 "
           "(repeatable)", flag="--set"),
    Option("initial", "int", 20, "initial labels", minimum=1),
    Option("query", "int", 20, "labels queried per round", minimum=1),
    Option("rounds", "int", 6, "query rounds", minimum=0),
    Option("seeds", "ints", [0, 1], "comma list of seeds", nonempty=True),
    # At least one epoch: with 0 every round evaluates an untrained model, a flat curve.
    Option("epochs", "int", 60, "epochs (max epochs with --train-accuracy)", minimum=1),
    Option("train_accuracy", "fraction", None, "train each round until this training "
           "accuracy, a fraction in [0, 1]", optional=True),
    Option("optimizer", "str", "adam", "the optimizer", choices=("adam", "sgd")),
    Option("lr", "float", 1e-3, "learning rate", positive=True),
    Option("weight_decay", "float", 0.0, "the optimizer's weight decay", minimum=0),
    Option("batch_size", "int", 32, "training batch size", minimum=1),
    Option("reset_weights", "bool", True, "continue training across rounds instead of "
           "resetting the weights", flag="--keep-weights"),
    Option("keep_batchnorm", "bool", False, "with the weight reset, re-initialise only Conv and "
           "Linear layers and keep BatchNorm from the previous round (the reference)"),
    Option("grad_clamp", "float", None, "clamp every gradient element to +-this before each "
           "step (the reference: 0.1)", optional=True, positive=True),
    Option("augment", "str", "none", "training transform: crop_flip is a random crop of the "
           "image's size after 4-pixel zero padding, and a random horizontal flip (the "
           "reference on CIFAR-10)", choices=("none", "crop_flip")),
    Option("untrained_first_query", "names", [], "strategies whose first query uses the "
           "untrained network (the reference: every method but bait)"),
    Option("device", "str", "cpu", "where the model runs"),
)
DEFAULTS = {o.key: o.default for o in SCHEMA}
# Where the data and the model run: may change on --resume without changing the experiment.
UNCHECKED = ("device", "data_dir")
_BY_KEY = {o.key: o for o in SCHEMA}


def default_config(**overrides):
    """DEFAULTS updated with `overrides`, every value checked against its Option; a deep,
    JSON-clean copy (what config.json will hold). Unknown keys are an error."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {', '.join(DEFAULTS)}")
    config = json.loads(json.dumps({**DEFAULTS, **overrides}))
    for key, value in config.items():
        _check(_BY_KEY[key], value)
    return config


def _check(opt, value, name=None):
    """Raise TypeError/ValueError unless `value` fits `opt`; `name` says what the error calls
    it (default: "config key 'KEY'"; the CLI passes the flag)."""
    name = name or f"config key {opt.key!r}"
    if value is None and opt.optional:
        return
    if opt.kind == "int":
        check_int(value, name, minimum=opt.minimum)
    elif opt.kind == "ints":
        _check_list(value, name, opt.nonempty)
        for v in value:
            check_int(v, f"every item of {name}", minimum=opt.minimum)
    elif opt.kind == "float":
        check_number(value, name, positive=opt.positive, minimum=opt.minimum)
    elif opt.kind == "fraction":
        check_fraction(value, name, low_open=False)
    elif opt.kind == "bool":
        check_bool(value, name)
    elif opt.kind == "names":
        _check_list(value, name, opt.nonempty)
        if not all(isinstance(v, str) for v in value):
            raise TypeError(f"{name} must be a list of names, got {value!r}")
    elif opt.kind in ("options", "nested"):
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict, got {value!r}")
    elif not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    if opt.choices:
        check_choice(value, name, opt.choices)


def _check_list(value, name, nonempty=False):
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list, got {value!r}")
    if nonempty and not value:
        raise ValueError(f"{name} is empty; give at least one (a comma list)")
    repeated = sorted({v for v in value if value.count(v) > 1}, key=str)
    if repeated:   # "--seeds 0,0" would run and report the same seed twice as two seeds
        raise ValueError(f"{name} lists {', '.join(map(str, repeated))} more than once; "
                         f"give each once")


def add_arguments(parser, keys=None):
    """One flag per Option (or per Option of `keys`) on an argparse parser; `from_args` turns
    the result into overrides."""
    for opt in _options_of(keys):
        flag = _flag(opt)
        kw = dict(dest=opt.key, help=opt.help)
        if opt.kind == "bool":
            kw.update(action="store_const", const=not opt.default, default=opt.default)
        elif opt.kind in ("options", "nested"):
            kw.update(action="append", default=[],
                      metavar="STRATEGY.KEY=VALUE" if opt.kind == "nested" else "KEY=VALUE")
        else:
            kw.update(type=_PARSERS[opt.kind], default=opt.default)
            if opt.choices:
                kw.update(choices=opt.choices)
            kw["help"] += f" (default: {_shown(opt.default)})"
        parser.add_argument(flag, **kw)


def _flag(opt):
    return opt.flag or "--" + opt.key.replace("_", "-")


def _options_of(keys):
    """The Options of `keys` in schema order (all of them for None)."""
    return [o for o in SCHEMA if keys is None or o.key in keys]


def _shown(default):
    """A default as it would be typed on the command line."""
    return ",".join(map(str, default)) if isinstance(default, list) else default


def from_args(args, keys=None):
    """{key: value} of every Option (or of `keys`) from the parsed flags of `add_arguments`,
    each checked against its Option at once, an error naming the flag (--query 0: "--query
    must be ...")."""
    config = {}
    for opt in _options_of(keys):
        value = getattr(args, opt.key)
        if opt.kind in ("options", "nested"):
            value = _options(value, nested=opt.kind == "nested")
        _check(opt, value, _flag(opt))
        config[opt.key] = value
    return config


def _value(text):
    """A flag's value as JSON where it parses (numbers, true/false, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _options(pairs, nested):
    """["a.b=1", ...] -> {"a": {"b": 1}} (nested) or ["b=1"] -> {"b": 1}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or (nested and "." not in key):
            form = "STRATEGY.KEY=VALUE" if nested else "KEY=VALUE"
            raise ValueError(f"bad option {pair!r}; expected {form}")
        if nested:
            name, key = key.split(".", 1)
            out.setdefault(name, {})[key] = _value(value)
        else:
            out[key] = _value(value)
    return out


def _ints(text):
    """A comma list of integers; argparse shows the message with the flag's name."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers such as 0,1,2, "
                                         f"got {text!r}") from None


def _names(text):
    return [v.strip() for v in text.split(",") if v.strip()]


_PARSERS = {"str": str, "int": int, "float": float, "fraction": float, "ints": _ints,
            "names": _names}
