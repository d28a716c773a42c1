"""``prednas bench reliability``: faults injected into a search and malformed inputs, with what survives them."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from prednas.errors import PredNASError


def register(main: click.Group, bench: click.Group) -> None:
    """Add the reliability benchmark."""
    bench.add_command(bench_reliability)


@click.command("reliability")
@click.option("--runs", type=click.IntRange(1, 20), default=2, show_default=True,
              help="Searches killed in each kind of step (evaluate, fit, search, top-K evaluate).")
@click.option("--inputs", type=click.IntRange(0, 100_000), default=100, show_default=True,
              help="Malformed inputs per kind (architecture, encoding, config) per space.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the searches, kill moments and inputs.")
@click.option("--pace", type=click.FloatRange(0.0, 10.0), default=0.1, show_default=True,
              help="Seconds each NB201 table query takes, so kills can land mid-shard.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures as JSON.")
def bench_reliability(runs: int, inputs: int, seed: int, pace: float, json_path: Path | None) -> None:
    """Kill, overlap, corrupt and cut off a small search; feed every space malformed input; print what held."""
    from rich.console import Console

    from prednas.bench.reliability import print_reliability, run_reliability

    if json_path is not None and not json_path.parent.exists():
        raise PredNASError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # schema-creation chatter of new SQLite stores
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    console = Console(stderr=True)
    report = run_reliability(runs=runs, inputs=inputs, seed=seed, pace_s=pace,
                             progress=lambda name: console.log(f"reliability: {name}"))
    print_reliability(report)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
