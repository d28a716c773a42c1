"""``prednas bench natssss``: FLOPs-constrained search on NATS-Bench sss at an equal query budget."""

from __future__ import annotations

from pathlib import Path

import click

from prednas.errors import PredNASError


def register(main: click.Group, bench: click.Group) -> None:
    """Add the NATS-Bench sss benchmark command."""
    bench.add_command(bench_natssss)


@click.command("natssss")
@click.option("--dataset", default="cifar100", show_default=True, help="cifar10, cifar100 or imagenet16_120.")
@click.option("--target-quantile", type=float, default=None,
              help="Window centre: this quantile (0 < q < 1) of the space's FLOPs [default: 0.5].")
@click.option("--target-flops", type=float, default=None, help="Window centre in FLOPs (2 x MACs), instead.")
@click.option("--window", type=float, default=0.05, show_default=True, help="Relative half-width of the window.")
@click.option("--n", "n", type=int, default=20, show_default=True, help="Random samples for the predictor.")
@click.option("--k", "k", type=int, default=30, show_default=True, help="Queries proposed after them.")
@click.option("--repeats", type=int, default=50, show_default=True, help="Independent searches per method.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Base seed; repeat r runs as `prednas run --seed 1000*seed+r`.")
@click.option("--methods", default="prednas,prednas-gradient,predictor-random,rea,random", show_default=True,
              help="Comma-separated methods.")
@click.option("--set", "--option", "options", multiple=True,
              help="Search config override key=value for the pipeline methods (repeatable).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: up to 2).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON.")
def bench_natssss(dataset: str, target_quantile: float | None, target_flops: float | None, window: float, n: int,
                  k: int, repeats: int, seed: int, methods: str, options: tuple[str, ...], workers: int | None,
                  json_path: Path | None) -> None:
    """Every method restricted to a FLOPs window: the answer's test accuracy against the in-window optimum."""
    from rich.progress import Progress

    from prednas.bench.natssss_bench import check_methods, run_natssss
    from prednas.bench.report import print_natssss
    from prednas.cli.nb201 import write_json

    names = check_methods([m.strip() for m in methods.split(",") if m.strip()])
    if json_path is not None and not json_path.parent.exists():
        raise PredNASError(f"--json {json_path}: folder {json_path.parent} does not exist")
    with Progress(transient=True) as progress:
        task = progress.add_task(f"natssss {dataset}", total=repeats * len(names))
        report = run_natssss(dataset, n=n, k=k, repeats=repeats, seed=seed, methods=names,
                             target_quantile=target_quantile, target_flops=target_flops, window=window,
                             workers=workers, overrides=tuple(options), progress=lambda: progress.advance(task))
    print_natssss(report)
    write_json(json_path, report)
