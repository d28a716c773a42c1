"""Printing benchmark reports as tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_nb201(report: dict[str, Any], console: Console | None = None) -> None:
    """Table II layout: ours beside the paper's rows, plus paired differences to random search."""
    from prednas.bench.nb201 import PAPER_TABLE_II, paper_column
    from prednas.bench.runner import paired

    console = console or Console(width=160)
    col = paper_column(report["dataset"])
    budget = report["n"] + report["k"]
    table = Table(
        title=f"NB201 {report['dataset']} | N={report['n']} K={report['k']} | "
        f"{report['repeats']} repeats | seed {report['seed']} | signal {report['signal']}"
    )
    for name in ("method", "queries", "test acc (mean ± std)", "vs random (paired ± SE)", "pool", "ops moved"):
        table.add_column(name, justify="right" if name != "method" else "left")
    results = report["results"]
    for method, r in results.items():
        diff = ""
        if "random" in results and method != "random" and report["repeats"] > 1:
            d, se = paired(report, method, "random")
            diff = f"{d:+.2f} ± {se:.2f}"
        stats = r.get("stats", {})
        table.add_row(
            method,
            f"{max(r['queries'])}",
            f"{r['mean']:.2f} ± {r['std']:.2f}",
            diff,
            f"{stats['pool_size']:.0f}" if "pool_size" in stats else "",
            f"{stats['mean_changed']:.2f}" if "mean_changed" in stats else "",
        )
    for name, values in PAPER_TABLE_II.items():
        queries = "15625" if name == "Optimal" else str(budget if budget == 70 else 70)
        table.add_row(
            f"[dim]{name} (paper)[/dim]" if "paper" not in name else f"[dim]{name}[/dim]",
            f"[dim]{queries}[/dim]",
            f"[dim]{values[col]:.2f}[/dim]",
            "",
            "",
            "",
        )
    console.print(table)
    console.print(f"wall time {report['wall_seconds']:.1f} s")


def print_ablation(report: dict[str, Any], console: Console | None = None) -> None:
    """Each lever's test accuracy and its paired gain over the row above."""
    console = console or Console(width=160)
    table = Table(
        title=f"NB201 {report['dataset']} lever ablation | N={report['n']} K={report['k']} | "
        f"{report['repeats']} repeats | seed {report['seed']}"
    )
    for name in ("configuration", "test acc (mean ± std)", "gain over row above (paired ± SE)"):
        table.add_column(name, justify="left" if name == "configuration" else "right")
    for label, r in report["results"].items():
        gain = r.get("gain")
        table.add_row(
            label, f"{r['mean']:.2f} ± {r['std']:.2f}", f"{gain['mean']:+.2f} ± {gain['se']:.2f}" if gain else ""
        )
    console.print(table)
    console.print(f"wall time {report['wall_seconds']:.1f} s")


def print_natssss(report: dict[str, Any], console: Console | None = None) -> None:
    """Each method's test accuracy in the FLOPs window, its gap to the in-window optimum and its paired difference."""
    from prednas.bench.runner import paired

    console = console or Console(width=160)
    where = f"q={report['target_quantile']:g}, " if report.get("target_quantile") is not None else ""
    table = Table(
        title=f"NATS-Bench sss {report['dataset']} | FLOPs {where}{report['target']:.4g} ± {report['window']:.0%} "
        f"({report['architectures']} architectures, optimum {report['optimum']:.2f}) | N={report['n']} "
        f"K={report['k']} | {report['repeats']} repeats | seed {report['seed']}"
    )
    results = report["results"]
    # the paired column compares with prednas, or with the first method when prednas did not run
    reference = "prednas" if "prednas" in results else next(iter(results))
    for name in ("method", "queries", "test acc (mean ± std)", "gap to optimum", f"vs {reference} (paired ± SE)",
                 "in window", "pool", "predictor evals"):
        table.add_column(name, justify="left" if name == "method" else "right")
    for method, r in results.items():
        diff = ""
        if method != reference and report["repeats"] > 1:
            d, se = paired(report, method, reference)
            diff = f"{d:+.2f} ± {se:.2f}"
        stats = r.get("stats", {})
        table.add_row(
            method,
            f"{max(r['queries'])}",
            f"{r['mean']:.2f} ± {r['std']:.2f}",
            f"{r['mean'] - report['optimum']:+.2f}",
            diff,
            f"{sum(r['in_window'])}/{len(r['in_window'])}",
            f"{stats['pool_size']:.0f}" if "pool_size" in stats else "",
            f"{stats['evaluations']:.0f}" if "evaluations" in stats else "",
        )
    console.print(table)
    console.print(f"wall time {report['wall_seconds']:.1f} s")


def print_curve(report: dict[str, Any], console: Console | None = None) -> None:
    """One row per method, one column per budget: mean test accuracy ± std; the paper's PredNAS points below."""
    console = console or Console(width=160)
    table = Table(title=f"NB201 {report['dataset']} against the query budget | {report['repeats']} repeats | "
                  f"seed {report['seed']}")
    table.add_column("method")
    for point in report["points"]:
        table.add_column(f"{point['n'] + point['k']} ({point['n']}+{point['k']})", justify="right")
    for method in report["methods"]:
        table.add_row(method, *(f"{p['results'][method]['mean']:.2f} ± {p['results'][method]['std']:.2f}"
                                for p in report["points"]))
    for name, points in report["paper"].items():
        given = dict(points)
        table.add_row(f"[dim]{name} (paper)[/dim]",
                      *(f"[dim]{given[p['n'] + p['k']]:.2f}[/dim]" if p["n"] + p["k"] in given else ""
                        for p in report["points"]))
    console.print(table)
    console.print(f"wall time {sum(p['wall_seconds'] for p in report['points']):.1f} s")
