"""The one config schema: defaults, checks, and the `fishermask run` flags built from it."""
import argparse

import pytest

from fishermask_ext.al import config


def _parsed(*flags):
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.default_config(**config.from_args(parser.parse_args(list(flags))))


def test_every_key_has_a_flag_and_no_flags_give_the_defaults():
    assert _parsed() == config.default_config() == config.DEFAULTS
    assert list(config.DEFAULTS) == [o.key for o in config.SCHEMA]


def test_flags_reach_the_config():
    got = _parsed("--weight-decay", "0.01", "--split-seed", "7", "--seeds", "3,4",
                  "--strategies", "random, bait", "--keep-weights",
                  "--set", "bait.lamb=0.5", "--model-option", "hidden=[8]")
    assert got["weight_decay"] == 0.01 and got["split_seed"] == 7 and got["seeds"] == [3, 4]
    assert got["strategies"] == ["random", "bait"] and got["reset_weights"] is False
    assert got["strategy_options"] == {"bait": {"lamb": 0.5}}
    assert got["model_options"] == {"hidden": [8]}


def test_values_are_checked_against_the_schema():
    with pytest.raises(ValueError, match="'query' must be an int >= 1, got 0"):
        config.default_config(query=0)
    with pytest.raises(TypeError, match="'seeds' must be an int"):
        config.default_config(seeds=[0, 1.5])
    with pytest.raises(TypeError, match="'reset_weights' must be True or False"):
        config.default_config(reset_weights="no")
    with pytest.raises(ValueError, match="'optimizer' must be one of 'adam', 'sgd'"):
        config.default_config(optimizer="lbfgs")
    with pytest.raises(ValueError, match="bad option 'lamb=1'; expected STRATEGY.KEY=VALUE"):
        _parsed("--set", "lamb=1")
