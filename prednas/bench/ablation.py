"""Lever ablation on NB201: each lever's paired gain over the configuration before it.

Rows add one lever at a time to the paper's algorithm, in the order of ``LEVERS``; each
row's gain is the mean paired difference (same seeds) to the row above, with its
standard error. The row marked "the prednas default" is ``SearchConfig()``; rows after it
are levers measured but not adopted.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from prednas.bench.nb201 import paired, run_entries
from prednas.search.methods import SearchConfig, parse_overrides

# (row label, overrides added on top of the previous row)
LEVERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("+ exhaustive scoring (space <= 100k)", ("exhaustive_limit=100000", "rounds=1")),
    ("+ refit between 4 query rounds", ("rounds=4",)),
    ("+ cost-pretrained predictor (the prednas default)", ("pretrain=20000",)),
    ("+ ensemble of 3, UCB", ("ensemble=3", "acquisition=ucb")),
)


def ablation_entries(n: int, k: int) -> dict[str, tuple[str, SearchConfig]]:
    """The paper's algorithm, then one lever more per row."""
    base = SearchConfig(n=n, k=k, rounds=1, ensemble=1, acquisition="mean", exhaustive_limit=0, pretrain=0)
    entries: dict[str, tuple[str, SearchConfig]] = {"prednas-paper": ("prednas-paper", base)}
    config = base
    for label, overrides in LEVERS:
        config = parse_overrides(config, list(overrides))
        entries[label] = ("prednas", replace(config))
    return entries


def run_ablation(
    dataset: str, *, n: int, k: int, repeats: int, seed: int, workers: int | None = None, progress: Any = None
) -> dict[str, Any]:
    """Run every ablation row and attach each row's paired gain over the row above."""
    entries = ablation_entries(n, k)
    report = run_entries(dataset, entries, repeats=repeats, seed=seed, workers=workers, progress=progress)
    labels = list(entries)
    for before, after in itertools.pairwise(labels):
        gain, se = paired(report, after, before)
        report["results"][after]["gain"] = {"vs": before, "mean": gain, "se": se}
    return report
