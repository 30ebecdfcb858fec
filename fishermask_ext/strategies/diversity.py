"""Diversity sampling: batches spread over feature or gradient-embedding space (Core-Set, BADGE)."""
import torch

from .base import Picks, Strategy

__all__ = ["CoreSet", "Badge"]

# Core-Set computes U x L distances this many labeled points at a time (memory, not speed).
_DISTANCE_CHUNK = 1024


class CoreSet(Strategy):
    """k-center greedy on penultimate features (Sener & Savarese, 2018).

    Each pick is the unlabeled point farthest from every labeled and already picked point;
    without labeled points the first pick is random (seeded). A pick's gain is that distance.
    """

    def choose(self, view, budget):
        feats = view.forward(torch.arange(len(view.pool)))[1].double()
        fu, fl = feats[view.unlabeled], feats[view.labeled]
        dist = torch.full((len(fu),), float("inf"), dtype=torch.float64)
        for s in range(0, len(fl), _DISTANCE_CHUNK):
            dist = torch.minimum(dist, torch.cdist(fu, fl[s:s + _DISTANCE_CHUNK]).min(1).values)
        picks, gains = [], []
        for _ in range(budget):
            j = int(dist.argmax()) if len(fl) or picks else \
                int(torch.randint(len(fu), (1,), generator=view.generator))
            picks.append(j)
            gains.append(float(dist[j]))
            dist = torch.minimum(dist, (fu - fu[j]).norm(dim=1))
            dist[picks] = -1.0
        return Picks(torch.tensor(picks), torch.tensor(gains, dtype=torch.float64))


class Badge(Strategy):
    """k-means++ seeding on gradient embeddings g = (p - e_ŷ) ⊗ h (Ash et al., 2020).

    The C·H-dimensional g is never built: ‖g_i - g_j‖² = ‖a_i‖²‖h_i‖² + ‖a_j‖²‖h_j‖²
    - 2 (a_i·a_j)(h_i·h_j) with a = p - e_ŷ. The first centre is the largest ‖g‖, as in BADGE.
    """

    def choose(self, view, budget):
        p, h = (t.double() for t in view.forward(view.unlabeled))
        a = p.clone()
        a[torch.arange(len(a)), p.argmax(1)] -= 1.0
        sq = (a * a).sum(1) * (h * h).sum(1)
        d2 = torch.full_like(sq, float("inf"))
        picks = [int(sq.argmax())]
        while True:
            c = picks[-1]
            d2 = torch.minimum(d2, (sq + sq[c] - 2.0 * (a @ a[c]) * (h @ h[c])).clamp_min(0.0))
            d2[picks] = 0.0
            if len(picks) == budget:
                return torch.tensor(picks)
            if float(d2.sum()) > 0:
                picks.append(int(torch.multinomial(d2 / d2.sum(), 1, generator=view.generator)))
            else:   # every point left duplicates a centre: take them in random order
                rest = torch.ones(len(d2), dtype=torch.bool)
                rest[picks] = False
                rest = rest.nonzero().flatten()
                picks.append(int(rest[torch.randint(len(rest), (1,), generator=view.generator)]))
