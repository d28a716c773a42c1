"""Lever ablation on NB201: each lever's paired gain over the configuration before it.

Rows add one lever at a time to the paper's algorithm (``prednas-paper``: the pipeline with
one round, no enumeration, no pretraining), in the order of ``LEVERS``, as search config
overrides of the pipeline; the last row is the ``prednas`` default. Each row's gain is the
mean paired difference (same run seeds) to the row above, with its standard error.
"""

from __future__ import annotations

import itertools
from typing import Any

from prednas.bench.nb201 import run_entries
from prednas.bench.runner import paired
from prednas.search.methods import PIPELINE_METHODS

# (row label, overrides added on top of the previous row)
LEVERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("+ exhaustive scoring (space <= 100k)", ("exhaustive_limit=100000",)),
    ("+ refit between 4 query rounds", ("rounds=4",)),
    ("+ cost-pretrained predictor (the prednas default)", ("pretrain=20000",)),
)


def ablation_entries() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The paper's algorithm, then one lever more per row (each a pipeline config)."""
    overrides = PIPELINE_METHODS["prednas-paper"]
    entries: dict[str, tuple[str, tuple[str, ...]]] = {"prednas-paper": ("prednas-paper", ())}
    for label, added in LEVERS:
        overrides = (*overrides, *added)
        entries[label] = ("prednas", overrides)
    return entries


def run_ablation(
    dataset: str, *, n: int, k: int, repeats: int, seed: int, workers: int | None = None, progress: Any = None
) -> dict[str, Any]:
    """Run every ablation row and attach each row's paired gain over the row above."""
    entries = ablation_entries()
    report = run_entries(dataset, entries, n=n, k=k, repeats=repeats, seed=seed, workers=workers, progress=progress)
    labels = list(entries)
    for before, after in itertools.pairwise(labels):
        gain, se = paired(report, after, before)
        report["results"][after]["gain"] = {"vs": before, "mean": gain, "se": se}
    return report
