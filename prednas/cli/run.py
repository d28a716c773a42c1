"""``prednas run``: the pipeline on this machine (``prednas ui`` shows its runs, see ``tracking.py``)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from prednas.cli.options import config_options, load_spec
from prednas.errors import PredNASError

ROOT_HELP = "Folder of the embedded default: MLflow SQLite store, triplet store, step logs."


def register(main: click.Group, bench: click.Group) -> None:
    """Add the run command."""
    main.add_command(run)


RESUME_HELP = ("Run a failed local run again under its run key (default: the latest under --root): what it "
               "stored is reused and nothing is measured again. Its recorded config applies unless --config is "
               "given; --set and the flags change it.")


@click.command()
@config_options
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help=ROOT_HELP)
@click.option("--in-process", is_flag=True, help="Call the same steps in this process instead of kfp.local.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and the steps it would run, then stop "
                                               "(reads no data, opens nothing).")
@click.option("--resume", is_flag=False, flag_value="", default=None, metavar="[RUN_KEY]", help=RESUME_HELP)
def run(root: Path, in_process: bool, json_path: Path | None, dry_run: bool, resume: str | None,
        **kwargs: Any) -> None:
    """Run a PredNAS search as a local Kubeflow pipeline and print the best architecture found."""
    from rich.console import Console

    from prednas.pipeline.local import new_run_key, preflight, record_config, resolve_embedded, run_local
    from prednas.tracking.relocate import anchor

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # schema-creation chatter of a new SQLite store
    key = _resumed(root, resume, kwargs) if resume is not None else None
    spec = resolve_embedded(load_spec(kwargs), root)
    if dry_run:
        return _dry_run(spec, key)
    anchor(root)  # a moved or copied root keeps its artifacts
    if json_path is not None and not json_path.parent.exists():
        raise PredNASError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
    preflight(spec)
    key = key or new_run_key("inprocess" if in_process else "local")
    console = Console(file=sys.stderr)  # bound now: kfp.local's output is redirected while steps run
    console.print(f"[bold]prednas[/] {spec.space} / {spec.evaluator.get('name')} n={spec.n} k={spec.k} "
                  f"seed={spec.seed}: tracking {spec.tracking_uri}, store {spec.store_uri}, run key {key}")
    with _progress(console, spec, steps=not in_process) as display:
        if in_process:
            record_config(spec, root, key)
            report, seconds, where = _in_process(spec, key, display)
        else:
            result = run_local(spec, root=root, run_key=key, on_task=display.task, on_arch=display.arch, check=False)
            report, seconds, where = result.report, result.seconds, f"step logs: {result.log_path}"
    print_report(report, seconds)
    click.echo(where)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")


def _resumed(root: Path, resume: str, kwargs: dict[str, Any]) -> str:
    """The run key to resume; without --config, its recorded config becomes the one to load."""
    from prednas.pipeline.local import find_run

    key, recorded = find_run(root, resume or None)
    if kwargs.get("config_path") is None:
        if recorded is None:
            raise PredNASError(f"run {key!r} recorded no config under {root / 'logs'}; pass --config with the "
                               f"config it ran")
        kwargs["config_path"] = recorded
    return key


def _dry_run(spec: Any, key: str | None) -> None:
    """The resolved config as YAML, then the DAG as comments (so the output is itself a config)."""
    import yaml

    from prednas.pipeline.plan import architectures, describe

    spec.check_evaluators(data=False)  # every option, as a run checks it; the data is a run's to check
    click.echo(yaml.safe_dump(spec.to_dict(), sort_keys=False).rstrip())
    click.echo(f"# the pipeline would run{f' (resuming {key})' if key else ''}; "
               f"{architectures(spec)} architectures to measure:")
    for line in describe(spec):
        click.echo(f"#  {line}")
    click.echo("# dry run: no data read, nothing opened or measured")


def _in_process(spec: Any, key: str, display: _progress) -> tuple[dict[str, Any], float, str]:
    import time

    from prednas.pipeline.inprocess import run_inprocess

    handler, logger = _ArchHandler(display), logging.getLogger("prednas.pipeline.steps")
    saved, started = logger.level, time.time()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        report = run_inprocess(spec, run_key=key)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
    return report, time.time() - started, "ran in-process"


class _ArchHandler(logging.Handler):
    """Hands the steps' architecture lines to the live display (in-process runs, where there is no step log)."""

    def __init__(self, display: _progress) -> None:
        super().__init__()
        self.display = display

    def emit(self, record: logging.LogRecord) -> None:
        from prednas.pipeline.progress import parse_arch

        event = parse_arch(record.getMessage())
        if event is not None:
            self.display.arch(event)


class _progress:
    """The live display: the steps (the running ones named) and the architectures measured out of N+K."""

    def __init__(self, console: Any, spec: Any, *, steps: bool = True) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from prednas.pipeline.plan import architectures, plan

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        self.steps = self.bar.add_task("steps: starting", total=sum(step.tasks for step in plan(spec)), visible=steps)
        self.archs = self.bar.add_task("architectures measured", total=architectures(spec))
        self.rounds, self.running = spec.rounds, Counter()  # running tasks by title, in start order
        self.done: set[tuple[str, int, int]] = set()

    def __enter__(self) -> _progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def task(self, name: str, status: str) -> None:
        """A pipeline task started (``RUNNING``) or finished."""
        from prednas.pipeline.plan import task_title

        title = task_title(name, self.rounds)
        if status == "RUNNING":
            self.running[title] += 1
        else:
            self.running[title] -= 1
            self.running += Counter()  # drop titles with no task left
            self.bar.update(self.steps, advance=1)
        self.bar.update(self.steps, description=f"steps: {', '.join(self.running) or 'between steps'}")

    def arch(self, event: Any) -> None:
        """An architecture line of an evaluate step; a retried step's repeats count once."""
        if event.done and event.key not in self.done:
            self.done.add(event.key)
            self.bar.update(self.archs, completed=len(self.done))


WIDTH = 100  # the report fits a 100-column terminal
LABEL = 26  # width of the label column of the summary lines
NB201_OPS = {"nor_conv_3x3": "c3", "nor_conv_1x1": "c1", "skip_connect": "skip", "avg_pool_3x3": "avg",
             "none": "none"}


def print_report(report: dict[str, Any], seconds: float) -> None:
    """The result table, the best architecture with its reported figures, and where to look next (100 columns)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    best, metrics = report["best"], report["metrics"]
    extras, costs = sorted(best["report"]), [c for c in ("flops", "params", "latency_ms") if c in best["cost"]]
    table = Table(title=f"best {len(report['table'])} measured architectures", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for head in ("#", "stage", "accuracy", *extras, *costs):
        table.add_column(_header(head), justify="left" if head == "stage" else "right", no_wrap=True)
    table.add_column("architecture", overflow="fold")  # abbreviated; folds rather than hiding the numbers
    for i, row in enumerate(report["table"], 1):
        table.add_row(str(i), row["stage"], f"{row['accuracy']:.2f}",
                      *(f"{row['report'].get(k, float('nan')):.2f}" for k in extras),
                      *(_si(row["cost"].get(k, float("nan"))) for k in costs), arch_short(row["arch"]))
    console = Console()
    console = Console(width=min(console.width, WIDTH) if console.is_terminal else WIDTH)
    console.print(table)
    if any(isinstance(row["arch"].get("arch"), str) for row in report["table"]):
        console.print("NB201 operations: c3 = nor_conv_3x3, c1 = nor_conv_1x1, avg = avg_pool_3x3, "
                      "skip = skip_connect", style="dim")
    click.echo("best architecture")
    for line in arch_lines(best["arch"]):
        click.echo(f"  {line}")
    lines = [("accuracy (search signal)", f"{best['accuracy']:.2f}")]
    lines += [(k.replace("_", " "), f"{best['report'][k]:.2f}") for k in extras]
    lines += [(k, _si(best["cost"][k])) for k in costs]
    if "topk_best" in report:  # a final stage re-measured the best; the top-K stage's choice stays visible
        topk = report["topk_best"]
        lines += [("final-stage measurements", str(len(report.get("final_table", [])))),
                  ("top-K stage's choice", f"{arch_short(topk['arch'])} ({topk['accuracy']:.2f})")]
    lines += [("queries this run", f"{metrics['queries']:.0f}"), ("wall time", f"{seconds:.1f} s"),
              ("MLflow run", f"{report['parent_run_id']} in experiment {report['experiment']!r}"),
              ("tracking", _short_uri(report["tracking_uri"]))]
    for name, value in lines:
        click.echo(_wrapped(f"{name:<{LABEL}}", value))
    trajectory = report.get("rounds") or []
    if trajectory:
        click.echo("best so far after each round (search signal, test where known)")
        for point in trajectory:
            test = f"  test {point['best_test_accuracy']:.2f}" if "best_test_accuracy" in point else ""
            label = "samples" if point["round"] == 0 else f"round {point['round']:.0f}"
            click.echo(f"  {label:<10} {point['queries']:>4.0f} queries  {point.get('best_accuracy', float('nan')):.2f}"
                       f"{test}")


def _header(name: str) -> str:
    """A short column header: ``test_accuracy`` -> ``test acc``, ``latency_ms`` -> ``ms``."""
    return {"latency_ms": "ms"}.get(name, name.replace("accuracy", "acc").replace("_", " "))


def arch_short(arch: dict[str, Any]) -> str:
    """An architecture in a few dozen characters: NB201's string with short op names, else a size summary."""
    from prednas.tracking.naming import child_name

    if isinstance(arch.get("arch"), str):
        text = arch["arch"]
        for op, short in NB201_OPS.items():
            text = text.replace(op, short)
        return text
    return child_name(arch)


def arch_lines(arch: dict[str, Any], width: int = WIDTH - 2) -> list[str]:
    """The whole architecture (NB201 string or JSON) in lines of at most ``width`` characters."""
    import textwrap

    text = _arch_text(arch)
    if len(text) <= width:
        return [text]
    if isinstance(arch.get("arch"), str):  # NB201: break between the cell's nodes
        lines, line = [], ""
        for part in text.split("+"):
            piece = f"+{part}" if line else part
            if line and len(line) + len(piece) > width:
                lines.append(line)
                piece = f"+{part}"
                line = ""
            line += piece
        return [*lines, line]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [text]


def _wrapped(label: str, value: str) -> str:
    import textwrap

    lines = textwrap.wrap(value, WIDTH - len(label), break_long_words=False, break_on_hyphens=False) or [""]
    if any(len(line) > WIDTH - len(label) for line in lines):  # an unbreakable value (a path): on its own line
        return f"{label.rstrip()}\n  {value}"
    return "\n".join([label + lines[0], *(" " * len(label) + line for line in lines[1:])])


def _short_uri(uri: str) -> str:
    """A SQLite URI with its path relative to the working folder when that is shorter."""
    import os.path

    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix):]
        relative = os.path.relpath(path)
        if len(relative) < len(path):
            return prefix + relative
    return uri


def _arch_text(arch: dict[str, Any]) -> str:
    return str(arch["arch"]) if set(arch) == {"arch"} else json.dumps(arch, sort_keys=True)


def _si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.3g}"
