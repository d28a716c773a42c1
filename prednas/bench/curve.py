"""Test accuracy against the query budget on NAS-Bench-201: ``prednas bench nb201-curve``.

Each budget is one ``prednas bench nb201`` run (``run_entries``) at its N + K split, with
the same seed, so a method's points are the same protocol at different budgets. The
default splits are 5 + 15, 5 + 25, 20 + 30 and 30 + 40 (20, 30, 50 and 70 queries). Below
50 queries the cost-pretrained predictor stands in for most of the random samples: on
development seed 0 (20 repeats), N = 5 gave `prednas` 94.08 / 71.97 at 20 queries and
94.29 / 73.04 at 30 (CIFAR-10 / CIFAR-100) against 93.88 / 71.14 and 94.21 / 72.43 with N = 10.

The paper's points (CIFAR-100, 15 repeats each; other datasets only at 70 and 110 queries):
Table II (70 and 110 queries) and Table VIII, whose bottom row varies K at N = 30 (40 to 80
queries) and whose top row varies N at K = 40 (50 to 90 queries).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prednas.bench.nb201 import DATASETS, check_methods, run_entries
from prednas.errors import PredNASError

DEFAULT_SPLITS: tuple[tuple[int, int], ...] = ((5, 15), (5, 25), (20, 30), (30, 40))

# (queries, mean test accuracy) per dataset, from the paper's Tables II and VIII.
PAPER_PREDNAS: dict[str, tuple[tuple[int, float], ...]] = {
    "cifar10": ((70, 94.20), (110, 94.30)),
    "cifar100": ((40, 71.92), (50, 72.56), (60, 72.74), (70, 73.09), (80, 73.17), (110, 73.17)),
    "imagenet16_120": ((70, 46.72), (110, 46.67)),
}
PAPER_70: dict[str, tuple[float, float, float]] = {  # Table II baselines at 70 queries
    "random": (93.80, 71.18, 45.38),
    "rea": (94.04, 71.78, 45.52),
}


def parse_splits(text: str) -> list[tuple[int, int]]:
    """``"10+10,10+20"`` -> [(10, 10), (10, 20)]; each N at least 2 and K at least 1."""
    splits = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        match = re.fullmatch(r"(\d+)\s*\+\s*(\d+)", item)
        if not match or int(match.group(1)) < 2 or int(match.group(2)) < 1:
            raise PredNASError(f"--splits item {item!r}: expected N+K with N >= 2 and K >= 1, e.g. 10+20")
        splits.append((int(match.group(1)), int(match.group(2))))
    if not splits:
        raise PredNASError(f"--splits {text!r}: expected comma-separated N+K budgets, e.g. 10+10,10+20")
    return splits


def run_curve(dataset: str, *, splits: list[tuple[int, int]], repeats: int, seed: int, methods: list[str],
              workers: int | None = None, overrides: tuple[str, ...] = (), progress: Any = None) -> dict[str, Any]:
    """One NB201 benchmark per split; the reports in budget order."""
    check_methods(methods)
    if dataset not in DATASETS:
        raise PredNASError(f"--dataset {dataset!r}: expected one of: {', '.join(DATASETS)}")
    points = []
    for n, k in sorted(splits, key=lambda s: (s[0] + s[1], s)):
        entries = {m: (m, tuple(overrides)) for m in methods}
        points.append(run_entries(dataset, entries, n=n, k=k, repeats=repeats, seed=seed, workers=workers,
                                  progress=progress))
    return {"dataset": dataset, "repeats": repeats, "seed": seed, "methods": methods,
            "splits": [[p["n"], p["k"]] for p in points], "points": points,
            "paper": {"prednas": [list(p) for p in PAPER_PREDNAS[dataset]],
                      **{m: [[70, v[DATASETS.index(dataset)]]] for m, v in PAPER_70.items()}}}


def plot_curve(report: dict[str, Any], path: Path) -> None:
    """Test accuracy against queries, one line per method, with the paper's points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in report["methods"]:
        xs = [p["n"] + p["k"] for p in report["points"]]
        ys = [p["results"][method]["mean"] for p in report["points"]]
        ax.plot(xs, ys, marker="o", label=method)
    for i, (name, pts) in enumerate(report["paper"].items()):
        ax.scatter([q for q, _ in pts], [a for _, a in pts], marker="xs^"[i % 3], color="black", zorder=3,
                   label=f"{name} (paper)")
    ax.set_xlabel("queries (N + K)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"NB201 {report['dataset']}: {report['repeats']} repeats, seed {report['seed']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
