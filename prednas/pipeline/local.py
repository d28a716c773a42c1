"""``prednas run``: the pipeline on this machine with ``kfp.local`` (each step a subprocess).

The embedded default needs no server: MLflow tracks into SQLite (``runs/mlflow.db``, its
artifacts in ``runs/mlartifacts``) and triplets go to ``runs/store``; ``tracking_uri`` and
``store_uri`` point a run at real servers instead. Before any step starts, the spec's
evaluators are built, the samples drawn inside any cost window, and the store and tracking
server opened once, so a bad option, a window too narrow for N or an unreachable endpoint
is one line, not a failed step.

kfp.local's own log (every step's output) goes to ``runs/logs/<run key>.log`` and the
resolved config to ``runs/logs/<run key>.yaml``; a failed run raises ``PredNASError`` with
the failing step's own one-line error taken from the log. Run again under the same run key
(``prednas run --resume``), a run finds its MLflow parent run and its triplets in the store
again, so nothing it measured is measured again (see ``prednas.pipeline.steps``).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from prednas.errors import PredNASError
from prednas.pipeline import exchange
from prednas.pipeline.config import SearchSpec
from prednas.pipeline.interrupt import end_killed, sigterm_as_interrupt
from prednas.pipeline.progress import ArchEvent, parse_arch

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_START = re.compile(r"Executing task '([^']+)'")
_TASK_DONE = re.compile(r"Task '([^']+)' finished with status (\w+)")
_STEP_ERROR = re.compile(r"(?:prednas\.errors\.)?PredNASError: (.+)$")


def resolve_embedded(spec: SearchSpec, root: str | Path = "runs") -> SearchSpec:
    """Fill an empty tracking URI / store URI with the local SQLite store and directory under ``root``."""
    base = Path(root).absolute()
    changes = {}
    if not spec.tracking_uri:
        changes["tracking_uri"] = f"sqlite:///{base / 'mlflow.db'}"
    if not spec.store_uri:
        changes["store_uri"] = str(base / "store")
    return replace(spec, **changes)


def preflight(spec: SearchSpec) -> None:
    """Build the evaluators, draw the samples inside any cost window, then open the store and
    tracking server once (fail fast, one line; nothing is opened before the first two pass)."""
    from prednas.pipeline.steps import check_samples

    spec.check_evaluators()
    check_samples(spec)
    run = exchange.RunRef(spec.store_uri, spec.tracking_uri, spec.experiment)
    run.store()
    run.tracker()


def new_run_key(prefix: str = "local") -> str:
    """A run key: the prefix, the local time and a random suffix (``local-20261205-101500-3fa2c1``)."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def record_config(spec: SearchSpec, root: str | Path, run_key: str) -> Path:
    """Write the resolved config of run ``run_key`` to ``root/logs/<run key>.yaml`` (what a resume reads)."""
    import yaml

    path = Path(root).absolute() / "logs" / f"{run_key}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return path


def find_run(root: str | Path, run_key: str | None = None) -> tuple[str, Path | None]:
    """The run key to resume (``run_key``, else the latest local run under ``root``) and its recorded config.

    Local runs are the names in ``root/logs`` (``<key>.log``, ``<key>.yaml``) and ``root/kfp``;
    the config is None for a run that recorded none.
    """
    base = Path(root).absolute()
    entries = [*(base / "logs").glob("*.log"), *(base / "logs").glob("*.yaml"),
               *(p for p in (base / "kfp").glob("*") if p.is_dir())]
    latest: dict[str, float] = {}
    for entry in entries:
        name = entry.stem if entry.is_file() else entry.name
        latest[name] = max(latest.get(name, 0.0), entry.stat().st_mtime)
    if not latest:
        raise PredNASError(f"no local runs under {base} to resume; expected {base / 'logs'} from an earlier "
                           f"prednas run")
    if run_key is None:
        run_key = max(latest, key=lambda k: latest[k])
    elif run_key not in latest:
        recent = sorted(latest, key=lambda k: latest[k], reverse=True)[:3]
        raise PredNASError(f"run key {run_key!r} is not a local run under {base}; expected one of the names in "
                           f"{base / 'logs'}, e.g. {', '.join(recent)}")
    config = base / "logs" / f"{run_key}.yaml"
    return run_key, config if config.is_file() else None


@dataclass(frozen=True)
class LocalRun:
    """A finished local pipeline run."""

    report: dict[str, Any]
    run_key: str
    log_path: Path
    seconds: float


class _LogTee:
    """A text stream that writes kfp.local's output to a log file and reports progress from it.

    ``on_task(name, status)`` hears each task start (status ``RUNNING``) and finish (kfp's
    status); ``on_arch(event)`` each architecture line of an evaluate step
    (``prednas.pipeline.progress``).
    """

    def __init__(self, file: TextIO, on_task: Callable[[str, str], None] | None,
                 on_arch: Callable[[ArchEvent], None] | None = None) -> None:
        self.file, self.on_task, self.on_arch, self._line = file, on_task, on_arch, ""

    def write(self, text: str) -> int:
        self.file.write(text)
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            self._report(_ANSI.sub("", line))
        return len(text)

    def _report(self, line: str) -> None:
        if self.on_task is not None and (match := _TASK_DONE.search(line) or _TASK_START.search(line)):
            self.on_task(match.group(1), match.group(2) if match.re is _TASK_DONE else "RUNNING")
        if self.on_arch is not None and (event := parse_arch(line)) is not None:
            self.on_arch(event)

    def flush(self) -> None:
        self.file.flush()

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _environment(tmp: Path) -> Iterator[None]:
    """Steps' temporary folders under ``tmp`` (kfp.local leaves one per task); ``print`` and logging kept intact.

    kfp.local swaps ``builtins.print`` and the root logger's handlers in each ParallelFor
    thread and restores them when the thread ends; threads ending out of order can leave
    another thread's indenting ``print`` or log handler (bound to our log file) behind.
    """
    root = logging.getLogger()
    saved, saved_tempdir, saved_print = os.environ.get("TMPDIR"), tempfile.tempdir, builtins.print
    saved_handlers, saved_level = root.handlers[:], root.level
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"], tempfile.tempdir = str(tmp), str(tmp)
    try:
        yield
    finally:
        builtins.print = saved_print
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        tempfile.tempdir = saved_tempdir
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved


def run_local(spec: SearchSpec, *, root: str | Path = "runs", run_key: str | None = None,
              on_task: Callable[[str, str], None] | None = None, on_arch: Callable[[ArchEvent], None] | None = None,
              check: bool = True) -> LocalRun:
    """Run the pipeline with kfp.local and return the last select step's report (``check``: preflight first).

    ``on_task`` and ``on_arch`` hear the steps and architectures as the log reports them (see ``_LogTee``).
    """
    from kfp import local

    from prednas.pipelines.prednas_pipeline import build_pipeline

    spec = resolve_embedded(spec, root)
    if check:
        preflight(spec)
    base = Path(root).absolute()
    key = run_key or new_run_key()
    work, log_path = base / "kfp" / key, base / "logs" / f"{key}.log"
    record_config(spec, base, key)
    pipeline = build_pipeline(parallelism=spec.parallelism, retries=spec.retries, cpu=spec.resources.cpu,
                              memory=spec.resources.memory, rounds=spec.rounds)
    started = time.time()
    with _environment(work / "tmp"), open(log_path, "a") as log:  # a resumed run adds to its log
        tee = _LogTee(log, on_task, on_arch)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work / "outputs"),
                   workspace_root=str(work / "workspace"), raise_on_error=True)
        try:
            with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee), sigterm_as_interrupt():
                pipeline(**spec.to_arguments(), run_key=key)
        except RuntimeError as exc:
            raise PredNASError(_failure(log_path, exc)) from None
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the parent run ends as KILLED, not RUNNING
            end_killed(spec.tracking_uri, spec.experiment, key)
            raise
    report = exchange.read_json(_report_path(work / "outputs"))
    shutil.rmtree(work / "tmp", ignore_errors=True)
    return LocalRun(report, key, log_path, time.time() - started)


def _report_path(outputs: Path) -> Path:
    """The last report of the latest pipeline run under ``outputs`` (a resumed run key holds several):
    the final stage's when it ran (final_m > 0), else the select step's."""
    runs = sorted((p for p in outputs.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    found = (sorted(runs[-1].glob("select-final/report")) or sorted(runs[-1].glob("select/report"))) if runs else []
    if len(found) != 1:
        raise PredNASError(f"expected one select report under {runs[-1] if runs else outputs}, found {len(found)}")
    return found[0]


def _failure(log_path: Path, exc: RuntimeError) -> str:
    """The failing step's own error line, else kfp's summary; with where the full log is."""
    errors = [m.group(1).strip() for line in log_path.read_text(errors="replace").splitlines()
              if (m := _STEP_ERROR.search(_ANSI.sub("", line)))]
    cause = errors[-1] if errors else _ANSI.sub("", str(exc)).strip()
    return f"{cause} (pipeline log: {log_path})"
