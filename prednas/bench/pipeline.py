"""Pipeline overhead: one search run as a local Kubeflow pipeline and in-process, same spec and seed.

Every run starts from an empty triplet store and logs to the same (already created) MLflow
SQLite store in its own experiment, so the pipeline and the in-process run do the same
work: the difference is orchestration. kfp.local runs each step in a fresh Python process
that imports kfp, the library, MLflow (and torch where it fits or searches) and opens the
tracking store before doing anything; ``critical_path(spec)`` steps lie on the critical
path (sample, evaluate, then fit, propose and evaluate in each round, select, close, and
the final stage's evaluate and select where there is one). That cost does not grow with
the search, so the *fixed startup* is measured as what the pipeline adds on the smallest
search with the same DAG (n=2, one top-K architecture per round, one-epoch fit, one
search step): ``pipeline_min - in_process_min``. The
target is ``pipeline <= 2 x in-process + fixed startup``. The start of one step process is
timed as well, to show where the fixed startup goes.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prednas.pipeline.config import SearchSpec

_STEP_START = """
import sys, time
started = time.time()
import kfp.dsl.executor_main  # what every lightweight component's process loads first
from prednas.pipeline import exchange, steps  # noqa: F401
exchange.RunRef(sys.argv[1], sys.argv[2], sys.argv[3]).tracker()
exchange.RunRef(sys.argv[1], sys.argv[2], sys.argv[3]).store()
"""


def step_start_seconds(spec: SearchSpec, repeats: int = 3) -> float:
    """Median wall time of a process that does what a step does before its work."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _STEP_START, spec.store_uri, spec.tracking_uri, spec.experiment],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def critical_path(spec: SearchSpec) -> int:
    """Step processes that run one after the other in the spec's DAG."""
    return 4 + 3 * spec.rounds + (2 if spec.final_m else 0)


def smallest(spec: SearchSpec) -> SearchSpec:
    """The same DAG (shards, rounds, stages, tracking) with almost no work in it."""
    return replace(spec, n=2, k=spec.rounds, predictor={**spec.predictor, "epochs": 1, "cv_folds": 0},
                   gradient={**spec.gradient, "starts": 2, "steps": 1}, alphas=(0.0,), cost=None)


def _both(spec: SearchSpec, base: Path, name: str) -> tuple[float, float, dict[str, Any], dict[str, Any]]:
    """Seconds and reports of the spec in-process and as a pipeline, each on a fresh store."""
    from prednas.pipeline.inprocess import run_inprocess
    from prednas.pipeline.local import preflight, run_local

    inproc = replace(spec, store_uri=str(base / f"store-{name}-in-process"), experiment=f"{name}-in-process")
    piped = replace(spec, store_uri=str(base / f"store-{name}-pipeline"), experiment=f"{name}-pipeline")
    preflight(inproc)
    preflight(piped)
    started = time.perf_counter()
    report = run_inprocess(inproc)
    seconds = time.perf_counter() - started
    local = run_local(piped, root=base / "kfp", check=False)
    return seconds, local.seconds, report, local.report


def run_overhead(spec: SearchSpec, root: str | Path) -> dict[str, Any]:
    """Time the search and the smallest search both ways, and a step's start; returns the figures."""
    from prednas.pipeline.local import resolve_embedded

    base = Path(root).absolute()
    spec = replace(resolve_embedded(spec, base), tracking_uri=f"sqlite:///{base / 'mlflow.db'}")
    in_s, pipe_s, in_report, pipe_report = _both(spec, base, "search")
    in_min, pipe_min, _, _ = _both(smallest(spec), base, "smallest")
    startup = max(0.0, pipe_min - in_min)
    return {
        "n": spec.n, "k": spec.k, "rounds": spec.rounds, "seed": spec.seed, "shards": spec.shards,
        "parallelism": spec.parallelism,
        "in_process_s": in_s, "pipeline_s": pipe_s, "smallest_in_process_s": in_min, "smallest_pipeline_s": pipe_min,
        "fixed_startup_s": startup, "step_start_s": step_start_seconds(spec),
        "critical_path_steps": critical_path(spec),
        "bound_s": 2 * in_s + startup, "ratio": pipe_s / in_s, "ratio_after_startup": (pipe_s - startup) / in_s,
        "same_result": in_report["best"]["arch"] == pipe_report["best"]["arch"],
        "best_arch": pipe_report["best"]["arch"],
        "best_test_accuracy": pipe_report["best"]["report"].get("test_accuracy", float("nan")),
    }


def print_overhead(figures: dict[str, Any]) -> None:
    """The benchmark's table and verdict."""
    import click
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pipeline overhead: n={figures['n']} k={figures['k']} seed={figures['seed']} "
                        f"shards={figures['shards']} parallelism={figures['parallelism']}", title_justify="left")
    for head in ("run", "wall s", "vs in-process"):
        table.add_column(head, justify="left" if head == "run" else "right")
    table.add_row("in-process (library steps)", f"{figures['in_process_s']:.1f}", "1.00x")
    table.add_row("kfp.local pipeline", f"{figures['pipeline_s']:.1f}", f"{figures['ratio']:.2f}x")
    few = f"n=2, k={figures['rounds']} in {figures['rounds']} rounds"
    table.add_row(f"smallest search in-process ({few})", f"{figures['smallest_in_process_s']:.1f}", "")
    table.add_row("smallest search as a pipeline", f"{figures['smallest_pipeline_s']:.1f}", "")
    table.add_row("  fixed startup (the difference)", f"{figures['fixed_startup_s']:.1f}", "")
    table.add_row(f"  one step process start (x {figures['critical_path_steps']} on the critical path)",
                  f"{figures['step_start_s']:.2f}", "")
    table.add_row("pipeline less fixed startup", f"{figures['pipeline_s'] - figures['fixed_startup_s']:.1f}",
                  f"{figures['ratio_after_startup']:.2f}x")
    Console().print(table)
    verdict = "yes" if figures["pipeline_s"] <= figures["bound_s"] else "no"
    click.echo(f"target pipeline <= 2 x in-process + fixed startup = {figures['bound_s']:.1f} s: {verdict}")
    click.echo(f"same best architecture in both: {'yes' if figures['same_result'] else 'no'}")
