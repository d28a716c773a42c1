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
    bench.add_command(bench_curve)


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
    write_json(json_path, report)


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
    write_json(json_path, report)


@click.command("nb201-curve")
@click.option("--dataset", default="cifar100", show_default=True, help="cifar10, cifar100 or imagenet16_120.")
@click.option("--splits", default="5+15,5+25,20+30,30+40", show_default=True,
              help="Comma-separated N+K budgets (20, 30, 50 and 70 queries).")
@click.option("--repeats", type=int, default=15, show_default=True, help="Independent searches per method and budget.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Base seed; repeat r runs as `prednas run --seed 1000*seed+r`.")
@click.option("--methods", default="prednas,predictor-random,rea,random", show_default=True,
              help="Comma-separated methods.")
@click.option("--set", "--option", "options", multiple=True,
              help="Search config override key=value, as `prednas run --set` takes it (repeatable).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: up to 2).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write test accuracy against queries as a PNG, with the paper's points.")
def bench_curve(dataset: str, splits: str, repeats: int, seed: int, methods: str, options: tuple[str, ...],
                workers: int | None, json_path: Path | None, plot_path: Path | None) -> None:
    """Test accuracy against the query budget: the NB201 benchmark at each N + K split."""
    from rich.progress import Progress

    from prednas.bench.curve import parse_splits, plot_curve, run_curve
    from prednas.bench.nb201 import check_methods
    from prednas.bench.report import print_curve

    names = check_methods([m.strip() for m in methods.split(",") if m.strip()])
    budgets = parse_splits(splits)
    for option, path in (("--json", json_path), ("--plot", plot_path)):
        if path is not None and not path.parent.exists():
            raise PredNASError(f"{option} {path}: folder {path.parent} does not exist")
    with Progress(transient=True) as progress:
        task = progress.add_task(f"nb201 curve {dataset}", total=repeats * len(names) * len(budgets))
        report = run_curve(dataset, splits=budgets, repeats=repeats, seed=seed, methods=names, workers=workers,
                           overrides=tuple(options), progress=lambda: progress.advance(task))
    print_curve(report)
    write_json(json_path, report)
    if plot_path is not None:
        plot_curve(report, plot_path)


def write_json(path: Path | None, report: dict) -> None:
    """Write a report as indented JSON (nothing without a path)."""
    if path is None:
        return
    if not path.parent.exists():
        raise PredNASError(f"cannot write {path}: folder {path.parent} does not exist")
    path.write_text(json.dumps(report, indent=1) + "\n")
