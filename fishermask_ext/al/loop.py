"""The active-learning experiment loop: train, evaluate, query, label; resumable round by round.

    run_experiment(default_config(strategies=["fishermask", "random"]), "results/demo")

The config's keys, types and defaults are those of config.py.

Layout of a results folder: `config.json` (the experiment), and per (strategy, seed) run
`runs/<strategy>-seed<seed>/state.json`, rewritten atomically after every round. Every random
choice of round r draws from a seed derived from (seed, r), so a run resumed after an
interruption redoes the interrupted round and ends exactly where an uninterrupted run ends.
"""
import copy
import glob
import hashlib
import os
import time

import torch

from .._progress import progress_bar
from . import data as datasets
from .. import strategies
from . import preflight
from .lock import check_free, folder_lock
from .config import DEFAULTS, UNCHECKED, default_config
from .io import read_json, write_json
from .training import build_model, evaluate, reset_conv_linear, train_model

__all__ = ["default_config", "run_experiment", "ActiveLearningLoop", "seed_for"]

# Strategy seeds are drawn below this bound: they fit a signed 32-bit int, which every seeding
# API a strategy may hand them to accepts.
STRATEGY_SEED_BOUND = 2**31


def seed_for(seed, *keys):
    """A 63-bit seed derived from (seed, *keys), stable across runs and platforms."""
    digest = hashlib.sha256(repr((int(seed),) + keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class ActiveLearningLoop:
    """One (strategy, seed) run. `step()` does one round and saves it; False once all are done.

    Round r trains on the labeled points (fresh weights from the run's initial state when
    config["reset_weights"], else continuing; with config["keep_batchnorm"] too, the previous
    round's model with its Conv and Linear layers re-initialised), evaluates on the test set,
    and, except after the last round, queries config["query"] points with the strategy and
    labels them (in round 0 with the untrained network for the strategies named in
    config["untrained_first_query"]).
    """

    def __init__(self, config, strategy, seed, arrays, run_dir, resume=False):
        self.config, self.strategy, self.seed = config, strategy, int(seed)
        self.train_x, self.train_y, self.test_x, self.test_y = arrays
        self.run_dir, self.path = run_dir, os.path.join(run_dir, "state.json")
        os.makedirs(run_dir, exist_ok=True)
        if resume and os.path.exists(self.path):
            self.state = read_json(self.path)
        else:
            n = len(self.train_y)
            check_schedule(config, n)
            g = torch.Generator().manual_seed(seed_for(seed, "initial"))
            first = torch.randperm(n, generator=g)[:config["initial"]].sort().values
            self.state = dict(strategy=strategy, seed=self.seed, config=config, history=[],
                              labeled=first.tolist(), checkpoint=None, done=False,
                              sizes=dict(pool=n, test=len(self.test_y)))

    @property
    def done(self):
        return self.state["done"]

    def _keeps_checkpoint(self):
        cfg = self.config
        return not cfg["reset_weights"] or cfg["keep_batchnorm"]

    def _model(self, r):
        cfg = self.config
        torch.manual_seed(seed_for(self.seed, "init"))
        model = build_model(cfg["model"], tuple(self.train_x.shape[1:]),
                            datasets.num_classes(self.train_y, self.test_y),
                            cfg["model_options"]).to(cfg["device"])
        if self._keeps_checkpoint() and self.state["checkpoint"]:
            path = os.path.join(self.run_dir, self.state["checkpoint"])
            model.load_state_dict(torch.load(path, map_location=cfg["device"]))
            if cfg["reset_weights"]:       # keep_batchnorm: only Conv and Linear start afresh
                torch.manual_seed(seed_for(self.seed, "reinit", r))
                reset_conv_linear(model)
        return model

    def step(self):
        """Run the next round and save the state; return False when the run is complete."""
        if self.done:
            return False
        cfg, r = self.config, len(self.state["history"])
        labeled = torch.tensor(self.state["labeled"], dtype=torch.long)
        model = self._model(r)
        untrained = (copy.deepcopy(model) if r == 0 and self.strategy in
                     cfg["untrained_first_query"] else None)
        seeds = dict(train=seed_for(self.seed, "train", r),
                     select=seed_for(self.seed, "select", r) % STRATEGY_SEED_BOUND)
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(seeds["train"])
        torch.manual_seed(seeds["train"])   # dropout and the like
        train_acc = train_model(model, self.train_x[labeled], self.train_y[labeled], cfg, g)
        t1 = time.perf_counter()
        acc = evaluate(model, self.test_x, self.test_y, cfg["device"])
        entry = dict(round=r, n_labeled=len(labeled), accuracy=acc, train_accuracy=train_acc,
                     train_s=t1 - t0, eval_s=time.perf_counter() - t1, select_s=None, picked=[],
                     seeds=seeds)
        if r < cfg["rounds"]:
            entry["picked"], entry["select_s"] = self._query(
                model if untrained is None else untrained, labeled, seeds["select"])
        self._save(r, entry, model)
        return not self.done

    def _query(self, model, labeled, seed):
        cfg = self.config
        mask = torch.zeros(len(self.train_y), dtype=torch.bool)
        mask[labeled] = True
        strategy = strategies.get(self.strategy, seed=seed, device=cfg["device"],
                                  **cfg["strategy_options"].get(self.strategy, {}))
        torch.manual_seed(seed)   # for strategies that draw from the global generator
        t0 = time.perf_counter()
        picks = strategy.select(model, self.train_x, mask, cfg["query"])
        return picks.tolist(), time.perf_counter() - t0

    def _save(self, r, entry, model):
        state = dict(self.state, history=self.state["history"] + [entry],
                     labeled=sorted(self.state["labeled"] + entry["picked"]),
                     done=r >= self.config["rounds"])
        old = self.state["checkpoint"]
        if self._keeps_checkpoint():
            state["checkpoint"] = f"model-round{r}.pt"
            torch.save(model.state_dict(), os.path.join(self.run_dir, state["checkpoint"]))
        write_json(self.path, state)
        if old and old != state["checkpoint"]:
            os.remove(os.path.join(self.run_dir, old))
        self.state = state


def check_schedule(config, pool_size):
    """Raise ValueError unless the pool holds initial + rounds x query points: the one budget
    check of the driver (default_config has checked that initial and query are >= 1; every query
    of a run that passes fits in the unlabeled points then left)."""
    need = config["initial"] + config["rounds"] * config["query"]
    if need > pool_size:
        raise ValueError(f"initial={config['initial']} + rounds={config['rounds']} x "
                         f"query={config['query']} = {need} labels in all, but the pool has "
                         f"{pool_size} points")


def completed_runs(out_dir):
    """The state.json files under `out_dir`/runs: one exists once a run's first round is done
    (the loop writes it after each round), so a folder without any holds no results."""
    return sorted(glob.glob(os.path.join(out_dir, "runs", "*", "state.json")))


def check_folder(out_dir, config, resume):
    """Raise FileExistsError unless `out_dir` may take `config`: it holds no completed round (a
    start that failed or was stopped early holds nothing that could be lost, and refusing it
    would block the corrected retry), or it holds this very experiment and `resume` is set."""
    path = os.path.join(out_dir, "config.json")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"the results folder {out_dir} (--out) is an existing file, not "
                              f"a folder; choose a folder path")
    if completed_runs(out_dir):
        saved = read_json(path)
        # A key the saved config lacks was added later with a default that keeps the old
        # behaviour: it matches that default.
        differ = sorted(k for k in set(saved) | set(config) if k not in UNCHECKED
                        and saved.get(k, DEFAULTS.get(k)) != config.get(k))
        if differ:
            raise FileExistsError(
                f"{out_dir} holds a different experiment (config differs in: "
                f"{', '.join(f'{k}={saved.get(k)!r} there, {config.get(k)!r} here' for k in differ)}"
                f"); choose another output folder or delete that one")
        if not resume:
            raise FileExistsError(f"{out_dir} already holds this experiment; pass resume=True "
                                  f"(--resume) to continue it, or choose another output folder")


def prepare_folder(out_dir, config, resume):
    """check_folder, then create `out_dir` and write its config.json."""
    check_folder(out_dir, config, resume)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "config.json"), config)


def run_experiment(config, out_dir, resume=False, progress=True):
    """Run every (strategy, seed) of `config` into `out_dir`; returns out_dir.

    resume=True continues the runs found there (an interrupted round is redone); a folder that
    holds a different experiment is never overwritten. Every name, option, device and the model
    are checked, and the one-time costs paid (preflight.warm_up), before anything is written.
    """
    config = default_config(**config)
    # Everything that can fail on bad input fails here, before the folder is written.
    preflight.check_experiment(config)
    arrays = datasets.load_for(config)
    check_schedule(config, len(arrays[1]))
    check_free(out_dir)         # another run writing there now: its pid, before other verdicts
    check_folder(out_dir, config, resume)
    preflight.warm_up(config, arrays)
    with folder_lock(out_dir):
        # Checked again under the lock: another run may have written rounds since.
        prepare_folder(out_dir, config, resume)
        _run_all(config, arrays, out_dir, resume, progress)
    return out_dir


def _run_all(config, arrays, out_dir, resume, progress):
    """Every (strategy, seed) run of `config`, one after the other, with one progress bar."""
    runs = [(s, seed) for seed in config["seeds"] for s in config["strategies"]]
    with progress_bar(len(runs) * (config["rounds"] + 1), progress,
                      os.path.basename(os.path.normpath(out_dir)), "rounds") as bar:
        for name, seed in runs:
            loop = ActiveLearningLoop(config, name, seed, arrays,
                                      os.path.join(out_dir, "runs", f"{name}-seed{seed}"), resume)
            bar.update(len(loop.state["history"]))
            while not loop.done:
                loop.step()
                last = loop.state["history"][-1]
                bar.set_postfix_str(f"{name} seed {seed}: {last['n_labeled']} labels, "
                                    f"acc {last['accuracy']:.3f}")
                bar.update(1)
