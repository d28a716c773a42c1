"""``prednas run``: the pipeline on this machine with ``kfp.local`` (each step a subprocess).

The embedded default needs no server: MLflow tracks into SQLite (``runs/mlflow.db``, its
artifacts in ``runs/mlartifacts``) and triplets go to ``runs/store``; ``tracking_uri`` and
``store_uri`` point a run at real servers instead. Before any step starts, the spec's
evaluators are built and the store and tracking server opened once, so a bad option or
an unreachable endpoint is one line, not a failed step.

kfp.local's own log (every step's output) goes to ``runs/logs/<run key>.log``; a failed
run raises ``PredNASError`` with the failing step's own one-line error taken from it.
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

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
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
    """Build the evaluators and open the store and tracking server once (fail fast, one line)."""
    spec.check_evaluators()
    run = exchange.RunRef(spec.store_uri, spec.tracking_uri, spec.experiment)
    run.store()
    run.tracker()


@dataclass(frozen=True)
class LocalRun:
    """A finished local pipeline run."""

    report: dict[str, Any]
    run_key: str
    log_path: Path
    seconds: float


class _LogTee:
    """A text stream that writes kfp.local's output to a log file and reports finished tasks."""

    def __init__(self, file: TextIO, on_task: Callable[[str, str], None] | None) -> None:
        self.file, self.on_task, self._line = file, on_task, ""

    def write(self, text: str) -> int:
        self.file.write(text)
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            match = _TASK_DONE.search(_ANSI.sub("", line))
            if match and self.on_task is not None:
                self.on_task(match.group(1), match.group(2))
        return len(text)

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
              on_task: Callable[[str, str], None] | None = None, check: bool = True) -> LocalRun:
    """Run the pipeline with kfp.local and return the last select step's report (``check``: preflight first)."""
    from kfp import local

    from prednas.pipelines.prednas_pipeline import build_pipeline

    spec = resolve_embedded(spec, root)
    if check:
        preflight(spec)
    base = Path(root).absolute()
    key = run_key or f"local-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    work, log_path = base / "kfp" / key, base / "logs" / f"{key}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(parallelism=spec.parallelism, retries=spec.retries, cpu=spec.resources.cpu,
                              memory=spec.resources.memory, rounds=spec.rounds)
    started = time.time()
    with _environment(work / "tmp"), open(log_path, "w") as log:
        tee = _LogTee(log, on_task)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work / "outputs"),
                   workspace_root=str(work / "workspace"), raise_on_error=True)
        try:
            with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
                pipeline(**spec.to_arguments(), run_key=key)
        except RuntimeError as exc:
            raise PredNASError(_failure(log_path, exc)) from None
    report = exchange.read_json(_report_path(work / "outputs"))
    shutil.rmtree(work / "tmp", ignore_errors=True)
    return LocalRun(report, key, log_path, time.time() - started)


def _report_path(outputs: Path) -> Path:
    """The last report: the final stage's when it ran (final_m > 0), else the select step's."""
    found = sorted(outputs.glob("*/select-final/report")) or sorted(outputs.glob("*/select/report"))
    if len(found) != 1:
        raise PredNASError(f"expected one select report under {outputs}, found {len(found)}")
    return found[0]


def _failure(log_path: Path, exc: RuntimeError) -> str:
    """The failing step's own error line, else kfp's summary; with where the full log is."""
    errors = [m.group(1).strip() for line in log_path.read_text(errors="replace").splitlines()
              if (m := _STEP_ERROR.search(_ANSI.sub("", line)))]
    cause = errors[-1] if errors else _ANSI.sub("", str(exc)).strip()
    return f"{cause} (pipeline log: {log_path})"
