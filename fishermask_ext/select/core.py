"""The one selection core (docs/ALGORITHM.md, step E). Every front-end (select_batch,
select_from_pool, distributed.select_batch) checks its own inputs, then hands the same Plan to
the same loop: the budget rule, the pool-Fisher mix, n_forward, the step count, P0 and the
pick scale, and the choice of engine are written here only.

Engines (Plan.engine, stated, never switched silently):
  "native loop"  csrc/greedy_select.cpp: the whole loop in one op call over a dense in-memory
                 tensor, no host round trip per step;
  "python loop"  ops/loop.py over the layout's step kernels (native or twins): a factored pool,
                 a store read chunk by chunk, or a progress bar (one callback per step);
  "sharded"      ops/loop.py with one collective per step (fishermask_ext.distributed).
All three run the same arithmetic and give the same picks (tests/select/test_factored.py,
tests/ops/test_commit_and_loop.py, tests/distributed).
"""
import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from .._checks import check_bool, check_budget, check_choice, check_int, check_number
from .._progress import shows_bar, step_bar
from ..ops import BACKENDS, native_available, resolve
from ..ops.loop import greedy_loop
from ..ops.sizes import BLOCK
from .checks import check_fisher

__all__ = ["Plan", "make_plan", "check_options", "one_labeled_source", "given_labeled_fisher",
           "labeled_mean", "initial_inverse"]


def check_options(lamb, backward_steps, parity, progress, return_gains, backend):
    """The options every front-end shares, checked once."""
    backward_steps = check_int(backward_steps, "backward_steps", minimum=0)
    lamb = check_number(lamb, "lamb", positive=True)
    for flag, name in ((parity, "parity"), (return_gains, "return_gains")):
        check_bool(flag, name)
    if progress is not None:
        check_bool(progress, "progress")
    check_choice(backend, "backend", BACKENDS)
    return dict(lamb=lamb, backward_steps=backward_steps, parity=parity,
                progress=progress, backend=backend)


def one_labeled_source(labeled, labeled_fisher):
    """ValueError when both the labeled points' embeddings and their Fisher are given."""
    if labeled is not None and labeled_fisher is not None:
        raise ValueError("give either labeled (embeddings) or labeled_fisher, not both")


def given_labeled_fisher(labeled_fisher, n_labeled, rows):
    """(F_L, n_L) from the caller's labeled_fisher (in the pool's dense column order) and
    n_labeled, as `rows`' working matrix; zeros and 0 when both are None."""
    D = rows.shape[2]
    if labeled_fisher is not None:
        if n_labeled is None:
            raise ValueError("labeled_fisher needs n_labeled, the number of labeled points "
                             "it averages (an int >= 0)")
        n_labeled = check_int(n_labeled, "n_labeled", minimum=0)
        F_L = check_fisher(labeled_fisher, "labeled_fisher", D, rows.device)
        return rows.to_working(F_L), n_labeled
    if n_labeled is not None:
        raise ValueError("n_labeled is only used with labeled_fisher; pass labeled_fisher too")
    return torch.zeros(D, D, dtype=torch.float64, device=rows.device), 0


def labeled_mean(sum_L, n_L):
    """F_L, the mean of X_iᵀX_i over the n_L labeled points, from their sum (zeros for none)."""
    return sum_L / max(n_L, 1)


def initial_inverse(F_L, n_L, K, lamb, D, device):
    """P0 = M0⁻¹ with M0 = λI + n_L/(n_L+K)·F_L, and the pick scale sqrt(K/(n_L+K)).

    BAIT's normalisation over the final labeled set of n_L + K points: the old labels' share
    n_L/(n_L+K) of it (F_L is their mean), and the batch's share K/(n_L+K) given to every pick
    through X̃ = sqrt(K/(n_L+K))·X, as BAIT and the reference do (docs/ALGORITHM.md, "Why the
    weights n_L/(n_L+K) and K/(n_L+K)")."""
    eye = torch.eye(D, dtype=torch.float64, device=device)
    if n_L == 0:
        # M0 = λI: its inverse through a 1×1 factorisation holds the very value the D×D one
        # would give on its diagonal (LAPACK's (1/√λ)², zeros elsewhere), without two O(D³)
        # calls (0.16 s of a 5.6 s selection at D = 1,402 on 2 cores).
        one = torch.full((1, 1), lamb, dtype=torch.float64, device=device)
        return eye * torch.cholesky_inverse(torch.linalg.cholesky(one)), math.sqrt(K / (n_L + K))
    L0, info = torch.linalg.cholesky_ex(lamb * eye + (n_L / (n_L + K)) * F_L)
    if int(info) != 0:
        raise ValueError("lamb·I + n_L/(n_L+K)·labeled_fisher is not positive definite: "
                         "labeled_fisher must be positive semi-definite (a mean of XᵀX)")
    return torch.cholesky_inverse(L0), math.sqrt(K / (n_L + K))


@dataclass
class Plan:
    """One selection, decided before any step runs (make_plan, then mix_fisher, then run)."""
    rows: object                      # select.rows layout of the candidates' pool
    candidates: Optional[torch.Tensor]   # [N] bool, or None: every row
    budget: int
    n_forward: int                    # (b+1)·K picks forward, at most the candidates
    n_steps: int                      # n_forward picks, then n_forward - K removals
    engine: str                       # "native loop", "python loop" or "sharded"
    why: str                          # why that engine
    opts: dict = field(repr=False)
    F: Optional[torch.Tensor] = field(default=None, repr=False)
    P0: Optional[torch.Tensor] = field(default=None, repr=False)
    scale: float = 1.0
    n_labeled: int = 0

    def __str__(self):
        N, C, D = self.rows.shape
        return (f"select {self.budget} of {N} ({'factored' if self.rows.factored else 'dense'} "
                f"C={C}, D={D}, {self.rows.dtype}) in {self.n_steps} steps: {self.engine} "
                f"({self.why})")

    def mix_fisher(self, sum_U, n_U, F_L, n_L, pool_fisher=None):
        """F = (Σ_U X_iᵀX_i + n_L·F_L) / (n_U + n_L), the mean over the unlabeled and labeled
        points, unless the caller gave `pool_fisher` (dense column order); then P0 and the
        scale. All matrices in the working order of the rows."""
        D = self.rows.shape[2]
        if pool_fisher is not None:
            self.F = self.rows.to_working(check_fisher(pool_fisher, "pool_fisher", D,
                                                       self.rows.device))
        else:
            self.F = (sum_U + F_L * n_L) / (n_U + n_L)
        self.n_labeled = n_L
        self.P0, self.scale = initial_inverse(F_L, n_L, self.budget, self.opts["lamb"], D,
                                              self.rows.device)
        return self

    def run(self, blocks=None, exchange=None, show_progress=True):
        """(picks [K] int64 in pick order, gains [K] f64) as tensors on the rows' device."""
        args = (self.P0, self.F, self.scale, self.budget, self.n_forward)
        if self.engine == "native loop":
            chunk = self.rows.chunk_rows()
            return resolve("greedy_select", self.rows.device, self.opts["backend"])(
                self.rows.native_tensor, *args, chunk, BLOCK, self.opts["parity"],
                self.candidates)
        blocks = blocks if blocks is not None else self.rows.blocks(self.candidates)
        progress = self.opts["progress"] if show_progress else False
        with step_bar(progress, self.n_steps, "picks", f"selecting ({self.engine})") as on_step:
            return greedy_loop(blocks, *args, self.opts["parity"],
                               kernels=self.rows.kernels(self.opts["backend"]),
                               exchange=exchange, on_step=on_step)


def make_plan(rows, budget, *, available, what, opts, candidates=None, sharded=False):
    """The Plan of picking `budget` of the `available` candidates (`what` names them in the
    budget error) among `rows` (a select.rows layout); `opts` from check_options."""
    K = check_budget(budget, available, what)
    n_forward = min((opts["backward_steps"] + 1) * K, available)
    engine, why = _engine(rows, opts, sharded)
    return Plan(rows=rows, candidates=candidates, budget=K, n_forward=n_forward,
                n_steps=2 * n_forward - K, engine=engine, why=why, opts=opts)


def _engine(rows, opts, sharded):
    if sharded:
        return "sharded", "candidates spread over the ranks of a process group"
    if rows.factored:
        return "python loop", "factored embeddings: the W/Z product through the factors"
    if rows.native_tensor is None:
        return "python loop", "rows read from a store chunk by chunk"
    if shows_bar(opts["progress"]):
        return "python loop", "a progress bar needs one callback per step"
    if opts["backend"] == "torch" or not native_available(rows.device, "greedy_select"):
        return "python loop", "the PyTorch twins (no native kernels for this device)" \
            if opts["backend"] != "torch" else "backend='torch': the PyTorch twins"
    return "native loop", "a dense in-memory tensor with native kernels"
