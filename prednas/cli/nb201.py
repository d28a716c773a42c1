"""``prednas bench nb201``: the Table II benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import click

from prednas.errors import PredNASError


def register(main: click.Group, bench: click.Group) -> None:
    """Add the NB201 benchmark command."""
    bench.add_command(bench_nb201)
    bench.add_command(bench_ablation)


@click.command("nb201")
@click.option("--dataset", default="cifar100", show_default=True, help="cifar10, cifar100 or imagenet16_120.")
@click.option("--n", "n", type=int, default=30, show_default=True, help="Random samples for the predictor.")
@click.option("--k", "k", type=int, default=40, show_default=True, help="Top-K queries from the pool.")
@click.option("--repeats", type=int, default=15, show_default=True, help="Independent searches per method.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Base seed; repeat r runs as `prednas run --seed 1000*seed+r`.")
@click.option(
    "--methods",
    default="prednas,prednas-paper,random,rea,predictor-random",
    show_default=True,
    help="Comma-separated methods.",
)
@click.option("--signal", default="valid", show_default=True, help="Search on the valid (or test) column.")
@click.option("--set", "--option", "options", multiple=True,
              help="Search config override key=value, as `prednas run --set` takes it (repeatable).")
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
    options: tuple[str, ...],
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
            overrides=tuple(options),
            progress=lambda: progress.advance(task),
        )
    print_nb201(report)
    _write_json(json_path, report)


@click.command("nb201-ablation")
@click.option("--dataset", default="cifar100", show_default=True, help="cifar10, cifar100 or imagenet16_120.")
@click.option("--n", "n", type=int, default=30, show_default=True)
@click.option("--k", "k", type=int, default=40, show_default=True)
@click.option("--repeats", type=int, default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=None, help="Worker processes (default: up to 2).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_ablation(
    dataset: str, n: int, k: int, repeats: int, seed: int, workers: int | None, json_path: Path | None
) -> None:
    """Each search lever's paired gain, added one at a time to the paper's algorithm."""
    from rich.progress import Progress

    from prednas.bench.ablation import LEVERS, run_ablation
    from prednas.bench.report import print_ablation

    with Progress(transient=True) as progress:
        task = progress.add_task(f"ablation {dataset}", total=repeats * (len(LEVERS) + 1))
        report = run_ablation(
            dataset, n=n, k=k, repeats=repeats, seed=seed, workers=workers, progress=lambda: progress.advance(task)
        )
    print_ablation(report)
    _write_json(json_path, report)


def _write_json(path: Path | None, report: dict) -> None:
    if path is None:
        return
    if not path.parent.exists():
        raise PredNASError(f"cannot write {path}: folder {path.parent} does not exist")
    path.write_text(json.dumps(report, indent=1) + "\n")
