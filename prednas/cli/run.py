"""``prednas run``: the pipeline on this machine (``prednas ui`` shows its runs, see ``tracking.py``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from prednas.cli.options import config_options, load_spec
from prednas.errors import PredNASError

ROOT_HELP = "Folder of the embedded default: MLflow SQLite store, triplet store, step logs."


def register(main: click.Group, bench: click.Group) -> None:
    """Add the run command."""
    main.add_command(run)


@click.command()
@config_options
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help=ROOT_HELP)
@click.option("--in-process", is_flag=True, help="Call the same steps in this process instead of kfp.local.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON.")
def run(root: Path, in_process: bool, json_path: Path | None, **kwargs: Any) -> None:
    """Run a PredNAS search as a local Kubeflow pipeline and print the best architecture found."""
    from rich.console import Console

    from prednas.pipeline.local import preflight, resolve_embedded, run_local

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # schema-creation chatter of a new SQLite store
    spec = resolve_embedded(load_spec(kwargs), root)
    if json_path is not None and not json_path.parent.exists():
        raise PredNASError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
    preflight(spec)
    console = Console(file=sys.stderr)  # bound now: kfp.local's output is redirected while steps run
    console.print(f"[bold]prednas[/] {spec.space} / {spec.evaluator.get('name')} n={spec.n} k={spec.k} "
                  f"seed={spec.seed}: tracking {spec.tracking_uri}, store {spec.store_uri}")
    if in_process:
        report, seconds, where = _in_process(spec, console)
    else:
        with _progress(console, _task_count(spec)) as advance:
            result = run_local(spec, root=root, on_task=advance, check=False)
        report, seconds, where = result.report, result.seconds, f"step logs: {result.log_path}"
    print_report(report, seconds)
    click.echo(where)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")


def _in_process(spec: Any, console: Any) -> tuple[dict[str, Any], float, str]:
    import time

    from prednas.pipeline.inprocess import run_inprocess

    started = time.time()
    with console.status("searching in-process"):
        report = run_inprocess(spec)
    return report, time.time() - started, "ran in-process"


def _task_count(spec: Any) -> int:
    """Steps of one run: sample, the shards of each stage, fit, search, select (and select-final), close."""
    final = min(spec.shards, spec.final_m) + 1 if spec.final_m else 0
    return 5 + min(spec.shards, spec.n) + min(spec.shards, spec.k) + final


class _progress:
    """A rich progress bar advanced once per finished pipeline step."""

    def __init__(self, console: Any, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        self.task = self.bar.add_task("pipeline: sample", total=total)

    def __enter__(self) -> Any:
        self.bar.start()
        return self.advance

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def advance(self, name: str, status: str) -> None:
        self.bar.update(self.task, advance=1, description=f"pipeline: {name} {status.lower()}")


def print_report(report: dict[str, Any], seconds: float) -> None:
    """The result table, the best architecture with its reported figures, and where to look next."""
    from rich.console import Console
    from rich.table import Table

    best, metrics = report["best"], report["metrics"]
    extras, costs = sorted(best["report"]), [c for c in ("flops", "params", "latency_ms") if c in best["cost"]]
    table = Table(title=f"best {len(report['table'])} measured architectures", title_justify="left")
    for head in ("#", "stage", "accuracy", *extras, *costs, "architecture"):
        table.add_column(head.replace("_", " "), justify="left" if head in ("architecture", "stage") else "right",
                         no_wrap=head == "architecture")
    for i, row in enumerate(report["table"], 1):
        table.add_row(str(i), row["stage"], f"{row['accuracy']:.2f}",
                      *(f"{row['report'].get(k, float('nan')):.2f}" for k in extras),
                      *(_si(row["cost"].get(k, float("nan"))) for k in costs), _arch_text(row["arch"]))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: keep architecture strings whole
    console.print(table)
    lines = [("best architecture", _arch_text(best["arch"])), ("accuracy (search signal)", f"{best['accuracy']:.2f}")]
    lines += [(k.replace("_", " "), f"{best['report'][k]:.2f}") for k in extras]
    lines += [(k, _si(best["cost"][k])) for k in costs]
    if "topk_best" in report:  # a final stage re-measured the best; the top-K stage's choice stays visible
        topk = report["topk_best"]
        lines += [("final-stage measurements", str(len(report.get("final_table", [])))),
                  ("top-K stage's choice", f"{_arch_text(topk['arch'])} ({topk['accuracy']:.2f})")]
    lines += [("queries this run", f"{metrics['queries']:.0f}"), ("wall time", f"{seconds:.1f} s"),
              ("MLflow run", f"{report['parent_run_id']} in experiment {report['experiment']!r} at "
                             f"{report['tracking_uri']}")]
    for name, value in lines:
        click.echo(f"{name:<26}{value}")


def _arch_text(arch: dict[str, Any]) -> str:
    return str(arch["arch"]) if set(arch) == {"arch"} else json.dumps(arch, sort_keys=True)


def _si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.3g}"
