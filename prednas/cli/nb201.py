"""``prednas bench nb201``: the Table II benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import click

from prednas.errors import PredNASError


def register(main: click.Group, bench: click.Group) -> None:
    """Add the NB201 benchmark command."""
    bench.add_command(bench_nb201)


@click.command("nb201")
@click.option("--dataset", default="cifar100", show_default=True, help="cifar10, cifar100 or imagenet16_120.")
@click.option("--n", "n", type=int, default=30, show_default=True, help="Random samples for the predictor.")
@click.option("--k", "k", type=int, default=40, show_default=True, help="Top-K queries from the pool.")
@click.option("--repeats", type=int, default=15, show_default=True, help="Independent searches per method.")
@click.option("--seed", type=int, default=0, show_default=True, help="Base seed; repeat r uses [seed, r].")
@click.option(
    "--methods",
    default="prednas,prednas-paper,random,rea,predictor-random",
    show_default=True,
    help="Comma-separated methods.",
)
@click.option("--signal", default="valid", show_default=True, help="Search on the valid (or test) column.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: up to 2).")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the results as JSON.",
)
def bench_nb201(
    dataset: str,
    n: int,
    k: int,
    repeats: int,
    seed: int,
    methods: str,
    signal: str,
    workers: int | None,
    json_path: Path | None,
) -> None:
    """Table II on NAS-Bench-201: mean and std of the chosen cell's test accuracy."""
    from rich.progress import Progress

    from prednas.bench.nb201 import check_methods, run_benchmark
    from prednas.bench.report import print_nb201

    names = check_methods([m.strip() for m in methods.split(",") if m.strip()])
    if json_path is not None and not json_path.parent.exists():
        raise PredNASError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
    with Progress(transient=True) as progress:
        task = progress.add_task(f"nb201 {dataset}", total=repeats * len(names))
        report = run_benchmark(
            dataset,
            n=n,
            k=k,
            repeats=repeats,
            seed=seed,
            methods=names,
            signal=signal,
            workers=workers,
            progress=lambda: progress.advance(task),
        )
    print_nb201(report)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1) + "\n")
