"""Projected gradient search through the predictors (paper Eq. 3 and Algorithm 1).

``T_max`` starting architectures are batched in one parameter tensor and updated for
``t_max`` steps on ``-P_main(relax(theta)) + alpha * P_aux(relax(theta))``; after every step
each row is projected onto the space (Eq. 4) and every distinct projected architecture
whose analytic cost falls in the target window joins the pool with its predicted score.
The learning rate is multiplied by ``lr_decay`` at 1/3 and 2/3 of the steps.

Deviations from Algorithm 1, each needed for the search to move:
- the iterate stays continuous; the projection of each step is recorded in the pool but
  does not replace the iterate (projecting a softmax parameter back to one-hot, or a size
  vector back to its grid, after every small step undoes the step);
- Adam by default: plain SGD at the paper's lr 0.02 on one-hot logits leaves every cell
  where it started, so the "search" silently ranks its random starts (``optimizer="sgd"``
  gives the paper's optimiser);
- a space with ``param_bounds = (lo, hi)`` (the size spaces, whose normalised encodings
  live in ``[0, 1]``) has the iterate clipped to that box after every step, a projected
  gradient step onto the relaxation's domain: otherwise the iterate drifts far outside the
  region the predictors were fitted on, where their extrapolation drives the step while
  the projection stays pinned at the range's edge;
- ``radius`` (None or 0: off, the default) keeps each iterate within that distance of its start in
  every coordinate, a trust region around the random start (the size spaces' default,
  ``prednas.search.constrained.SIZE_GRADIENT``);
- ``keep_starts`` also offers the starts themselves to the pool (the size spaces' default, whose
  starts are drawn inside the cost window);
- a cost term with an ``anchor(archs)`` method is told the projection of every row before the
  first step and after each one (``prednas.search.constrained.WindowPenalty`` corrects its
  predicted cost to the analytic cost there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prednas.errors import PredNASError


@dataclass(frozen=True)
class GradientConfig:
    """Algorithm 1's knobs."""

    starts: int = 100
    steps: int = 200
    lr: float = 0.02
    lr_decay: float = 0.5
    optimizer: str = "adam"
    alpha: float = 0.0
    radius: float | None = None
    keep_starts: bool = False


@dataclass(frozen=True)
class CostWindow:
    """Keep architectures whose ``metric`` lies in ``[target - delta, target + delta]``."""

    metric: str
    target: float
    delta: float

    def contains(self, cost: dict[str, float]) -> bool:
        """Whether a cost lies in the window."""
        return abs(cost[self.metric] - self.target) <= self.delta


@dataclass
class Pool:
    """Distinct projected architectures, best predicted score first."""

    archs: list[Any]
    scores: np.ndarray
    costs: list[dict[str, float]]
    stats: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.archs)


def gradient_search(
    space: Any,
    main: Any,
    *,
    rng: np.random.Generator,
    config: GradientConfig = GradientConfig(),
    aux: Any = None,
    window: CostWindow | None = None,
    starts: list[Any] | None = None,
) -> Pool:
    """Run Algorithm 1 from ``starts`` (or ``config.starts`` random architectures)."""
    if config.optimizer not in ("adam", "sgd"):
        raise PredNASError(f"unknown search optimiser {config.optimizer!r}; expected adam or sgd")
    if config.alpha and aux is None:
        raise PredNASError("alpha is non-zero but no auxiliary predictor was given")
    if config.radius is not None and not 0 <= config.radius < float("inf"):
        raise PredNASError(f"search radius must be a non-negative number (0: no limit), got {config.radius!r}")
    starts = starts if starts is not None else [space.sample(rng) for _ in range(config.starts)]
    theta = torch.tensor(np.stack([space.param(a) for a in starts]), dtype=torch.float32, requires_grad=True)
    opt = (
        torch.optim.Adam([theta], lr=config.lr)
        if config.optimizer == "adam"
        else torch.optim.SGD([theta], lr=config.lr, momentum=0.9)
    )
    third = max(1, config.steps // 3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[third, 2 * third], gamma=config.lr_decay)
    seen: dict[Any, dict[str, float] | None] = {}
    current = list(starts)
    if config.keep_starts:
        _collect(space, current, seen, window)
    anchor = getattr(aux, "anchor", None) if config.alpha else None
    if anchor is not None:
        anchor(current)
    bounds = getattr(space, "param_bounds", None)
    low = high = None
    if config.radius:
        origin = theta.detach().clone()
        low, high = origin - config.radius, origin + config.radius
        if bounds is not None:
            low, high = low.clamp(*bounds), high.clamp(*bounds)
    for _ in range(config.steps):
        enc = space.relax(theta)
        loss = -main(enc).sum()
        if config.alpha:
            loss = loss + config.alpha * aux(enc).sum()
        # the gradient of the iterate only: no predictor weight gradients, a third of the work
        (theta.grad,) = torch.autograd.grad(loss, theta)
        opt.step()
        sched.step()
        with torch.no_grad():
            if low is not None:
                theta.copy_(torch.maximum(torch.minimum(theta, high), low))
            elif bounds is not None:
                theta.clamp_(*bounds)
        current = [space.project(row) for row in theta.detach().numpy()]
        _collect(space, current, seen, window)
        if anchor is not None:
            anchor(current)
    return _rank(space, main, seen, starts, current)


def _collect(space: Any, archs: list[Any], seen: dict[Any, Any], window: CostWindow | None) -> None:
    for arch in archs:
        if arch in seen:
            continue
        cost = space.cost(arch)
        seen[arch] = cost if window is None or window.contains(cost) else None


def _rank(space: Any, main: Any, seen: dict[Any, Any], starts: list[Any], finals: list[Any]) -> Pool:
    archs = [a for a, cost in seen.items() if cost is not None]
    scores = main.predict_archs(archs)
    order = np.argsort(-scores, kind="stable")
    changed = [_changed(space, a, b) for a, b in zip(starts, finals, strict=True)]
    stats = {
        "pool_size": float(len(archs)),
        "visited": float(len(seen)),
        "mean_changed": float(np.mean(changed)) if changed else 0.0,
    }
    return Pool([archs[i] for i in order], scores[order], [seen[archs[i]] for i in order], stats)


def _changed(space: Any, a: Any, b: Any) -> int:
    """Encoding rows (topology) or features (size) that differ between two architectures."""
    ea, eb = space.encode(a), space.encode(b)
    if ea.ndim > 1:
        return int(np.count_nonzero(np.any(ea != eb, axis=tuple(range(1, ea.ndim)))))
    return int(np.count_nonzero(ea != eb))


def alpha_grid_search(
    space: Any,
    main: Any,
    aux: Any,
    alphas: list[float],
    *,
    rng: np.random.Generator,
    config: GradientConfig = GradientConfig(),
    window: CostWindow | None = None,
    draw: Callable[[np.random.Generator, int], list[Any]] | None = None,
) -> Pool:
    """Gradient search at every alpha of a grid (the paper's way of hitting a cost target); pools merged.

    ``draw(rng, n)`` gives each alpha's ``n`` starting architectures (default: the space's sampler).
    """
    merged: dict[Any, tuple[float, dict[str, float]]] = {}
    stats: dict[str, float] = {"pool_size": 0.0, "visited": 0.0, "mean_changed": 0.0}
    for alpha in alphas:
        cfg = GradientConfig(**{**config.__dict__, "alpha": alpha})
        starts = draw(rng, config.starts) if draw is not None else None
        pool = gradient_search(space, main, rng=rng, config=cfg, aux=aux if alpha else None, window=window,
                               starts=starts)
        for arch, score, cost in zip(pool.archs, pool.scores, pool.costs, strict=True):
            merged.setdefault(arch, (float(score), cost))
        stats["visited"] += pool.stats["visited"]
        stats["mean_changed"] += pool.stats["mean_changed"] / len(alphas)
    ranked = sorted(merged.items(), key=lambda kv: -kv[1][0])
    stats["pool_size"] = float(len(ranked))
    return Pool([a for a, _ in ranked], np.array([s for _, (s, _) in ranked]), [c for _, (_, c) in ranked], stats)
