"""The figures a search logs (paper Fig. 4-style scatter plots and Table results as pictures).

- ``predicted_vs_measured``: predictor quality on the top-K picks and, cross-validated, on
  its training set, with Kendall's tau (the paper's ranking metric, Sec. IV) and RMSE of
  each in the title;
- ``search_trajectory``: every queried accuracy in query order, coloured by stage, with the
  best-so-far line (how fast the search finds good architectures);
- ``accuracy_vs_cost``: every measured architecture with its Pareto front (higher accuracy,
  lower cost) and the chosen one marked.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through
``pyplot``'s global state, so they are safe in threads and headless steps. Each function
returns the figure; ``Tracker.log_final`` uploads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prednas.errors import PredNASError

STAGE_COLOURS = {"sample": "tab:blue", "top-k": "tab:orange", "final": "tab:red"}


def _figure(width: float = 5.0, height: float = 4.0) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _vector(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(array)):
        raise PredNASError(f"{name} must be finite numbers")
    return array


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> np.ndarray:
    """Indices of the non-dominated points (no other is cheaper-or-equal and more accurate), by cost."""
    cost, acc = _vector("costs", costs), _vector("accuracies", accuracies)
    if len(cost) != len(acc):
        raise PredNASError(f"{len(cost)} costs but {len(acc)} accuracies")
    order = np.lexsort((-acc, cost))  # cheapest first, the most accurate first among equal costs
    front, best = [], -np.inf
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return np.asarray(front, dtype=np.int64)


def predicted_vs_measured(measured: Sequence[float], predicted: Sequence[float], *, target: str = "accuracy",
                          training: tuple[Sequence[float], Sequence[float]] | None = None,
                          title: str | None = None) -> Any:
    """Predictions against measurements: the top-K picks and, given, the cross-validated training set.

    ``measured``/``predicted`` are the picks (predicted before they were measured); ``training``
    is (measured, cross-validated prediction) of the architectures the predictor was fitted
    on, so both sets are predictions on architectures the network had not seen. The picks
    were chosen for their high predictions, so they sit above the diagonal by selection;
    the training set shows the predictor's own error. Kendall tau and RMSE of each set are
    in the title.
    """
    from prednas.predictors.fit import kendall_tau

    y, p = _vector("measured", measured), _vector("predicted", predicted)
    if len(y) != len(p) or len(y) < 2:
        raise PredNASError(f"need at least 2 matching measured/predicted values, got {len(y)} and {len(p)}")
    sets = [("top-K picks", y, p, "tab:orange")]
    if training is not None:
        ty, tp = _vector("training measured", training[0]), _vector("training predicted", training[1])
        if len(ty) != len(tp) or len(ty) < 2:
            raise PredNASError(f"need at least 2 matching training values, got {len(ty)} and {len(tp)}")
        sets.insert(0, ("training set, cross-validated", ty, tp, "tab:blue"))
    figure, ax = _figure(6.4, 5.0)
    parts = []
    for label, sy, sp, colour in sets:
        tau, rmse = kendall_tau(sp, sy), float(np.sqrt(np.mean((sp - sy) ** 2)))
        ax.scatter(sy, sp, s=16, alpha=0.75, color=colour, label=f"{label} (n={len(sy)})")
        parts.append(f"{label}: Kendall tau {tau:.3f}, RMSE {rmse:.3g} (n={len(sy)})")
    every = np.concatenate([np.concatenate([s[1], s[2]]) for s in sets])
    lo, hi = float(every.min()), float(every.max())
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, linestyle="--", label="y = x")
    ax.set_xlabel(f"measured {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(title or "\n".join([f"{target} predictor, predicted vs measured", *parts]), fontsize=9,
                 loc="left")
    ax.legend(loc="lower right", fontsize=8)
    return figure


def search_trajectory(accuracies: Sequence[float], *, stages: Sequence[str] | None = None,
                      target: str = "accuracy") -> Any:
    """Each query's accuracy in query order (coloured by stage) and the best so far."""
    acc = _vector("accuracies", accuracies)
    if len(acc) == 0:
        raise PredNASError("a search trajectory needs at least one query")
    stages = list(stages) if stages is not None else ["sample"] * len(acc)
    if len(stages) != len(acc):
        raise PredNASError(f"{len(stages)} stages but {len(acc)} accuracies")
    figure, ax = _figure(6.0, 4.0)
    queries = np.arange(1, len(acc) + 1)
    for stage in dict.fromkeys(stages):
        mask = np.asarray([s == stage for s in stages])
        ax.scatter(queries[mask], acc[mask], s=14, color=STAGE_COLOURS.get(stage, "tab:grey"), label=stage)
    ax.step(queries, np.maximum.accumulate(acc), where="post", color="black", linewidth=1.2, label="best so far")
    ax.set_xlabel("query")
    ax.set_ylabel(target)
    ax.set_title(f"search trajectory: best {acc.max():.2f} after {int(np.argmax(acc)) + 1} of {len(acc)} queries")
    ax.legend(loc="best")
    return figure


def accuracy_vs_cost(costs: Sequence[float], accuracies: Sequence[float], *, cost_name: str = "flops",
                     chosen: int | None = None, stages: Sequence[str] | None = None,
                     target: str = "accuracy") -> Any:
    """Every measured architecture by cost and accuracy, the Pareto front, and the chosen one."""
    cost, acc = _vector("costs", costs), _vector("accuracies", accuracies)
    front = pareto_front(cost, acc)
    stages = list(stages) if stages is not None else ["sample"] * len(acc)
    figure, ax = _figure(6.0, 4.0)
    for stage in dict.fromkeys(stages):
        mask = np.asarray([s == stage for s in stages])
        ax.scatter(cost[mask], acc[mask], s=14, alpha=0.7, color=STAGE_COLOURS.get(stage, "tab:grey"), label=stage)
    ax.step(cost[front], acc[front], where="post", color="black", linewidth=1.2, label="Pareto front")
    if chosen is not None:
        if not 0 <= chosen < len(acc):
            raise PredNASError(f"chosen index {chosen} out of range for {len(acc)} points")
        ax.scatter([cost[chosen]], [acc[chosen]], marker="*", s=160, color="gold", edgecolor="black",
                   zorder=3, label="chosen")
    ax.set_xlabel(cost_name)
    ax.set_ylabel(target)
    ax.set_title(f"{target} vs {cost_name}: {len(front)} of {len(acc)} on the Pareto front")
    ax.legend(loc="best")
    return figure


def search_figures(triplets: Sequence[Any], *, cost_name: str = "flops", chosen_trial: str | None = None) -> dict:
    """The trajectory and accuracy-vs-cost figures of stored triplets (in creation order)."""
    ordered = sorted(triplets, key=lambda t: (t.created_at, t.trial))
    if not ordered:
        raise PredNASError("no triplets to plot")
    missing = [t.arch_id for t in ordered if cost_name not in t.cost]
    if missing:
        raise PredNASError(f"cost {cost_name!r} not measured for architecture {missing[0]}")
    acc, stages = [t.accuracy for t in ordered], [t.stage for t in ordered]
    trials = [t.trial for t in ordered]
    chosen = trials.index(chosen_trial) if chosen_trial in trials else None
    return {"search_trajectory": search_trajectory(acc, stages=stages),
            "accuracy_vs_cost": accuracy_vs_cost([t.cost[cost_name] for t in ordered], acc, cost_name=cost_name,
                                                 chosen=chosen, stages=stages)}
