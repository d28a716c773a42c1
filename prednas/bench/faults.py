"""Running a search step by step in a child process, to kill it and resume it (``prednas bench reliability``).

``drive(workdir)`` runs the pipeline's step functions in DAG order (sample, evaluate each
shard, then per round fit, search and evaluate each top-K shard, then select, close) and publishes each step's
outputs atomically, as KFP publishes a task's outputs only when it succeeds; a step whose
outputs exist is not run again, so calling it after a kill resumes at the killed step,
like a retried pipeline task. The parent side starts it (``spawn``), kills it a chosen
moment after a step starts (``kill_during``), and reads back the outcome.

The evaluator is the NB201 table paced at ``$PREDNAS_BENCH_PACE_S`` per query (as if each
evaluation trained for a moment), so a kill can land in the middle of a shard; each call
is logged to ``$PREDNAS_BENCH_CALLS``, so tests can count evaluations independently of the
store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prednas.evaluators.nb201_table import NB201TableEvaluator

SMALL = ["n=6", "k=4", "rounds=2", "pretrain=0", "shards=2", "predictor.epochs=40", "predictor.cv_folds=2",
         "gradient.starts=10",
         "gradient.steps=20", "evaluator.dataset=cifar100"]
KILL_TARGETS = ("evaluate-sample", "fit", "search", "evaluate-top-k")
CALLS_ENV, PACE_ENV, TTL_ENV = "PREDNAS_BENCH_CALLS", "PREDNAS_BENCH_PACE_S", "PREDNAS_BENCH_CLAIM_TTL_S"
BARRIER_ENV = "PREDNAS_BENCH_BARRIER"  # "folder:parties": runs wait for each other before their first evaluation


class PacedTable(NB201TableEvaluator):
    """The NB201 table, taking ``$PREDNAS_BENCH_PACE_S`` per query and logging each call to ``$PREDNAS_BENCH_CALLS``.

    Its ``config()`` is the table's own, so its triplets are the table's triplets.
    """

    def evaluate(self, space: Any, arch: Any) -> Any:
        """Wait, record the call, then look the architecture up."""
        time.sleep(float(os.environ.get(PACE_ENV, "0")))
        calls = os.environ.get(CALLS_ENV)
        if calls:
            from prednas.spaces import arch_id

            with open(calls, "a") as f:  # one short line per call: appends do not interleave
                f.write(f"{arch_id(space, arch)}\n")
        return super().evaluate(space, arch)


def _use_paced_table() -> None:
    from prednas.evaluators.registry import register_evaluator

    register_evaluator("nb201-table", f"{__name__}:PacedTable", spaces=("nb201",), options=("dataset", "signal"),
                       claim_ttl_s=float(os.environ.get(TTL_ENV, "0")))


# -- the step driver (runs in the child process) -------------------------------------------
def _write(path: Path, data: Any) -> None:
    """Publish a step output atomically (bytes as they are, anything else as JSON)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data if isinstance(data, bytes) else json.dumps(data, sort_keys=True).encode())
    os.replace(tmp, path)


def _mark(work: Path, event: str, step: str) -> None:
    with open(work / "progress", "a") as f:
        f.write(f"{time.time():.3f} {event} {step}\n")
        f.flush()


def _once(work: Path, step: str, output: Path, run: Any) -> None:
    """Run one step unless its output exists (a finished step is not run again)."""
    if output.exists():
        return
    _mark(work, "start", step)
    run()
    _mark(work, "done", step)


def drive(workdir: str | Path) -> None:
    """Run or resume the search in ``workdir`` (``spec.yaml``, ``run_key``) step by step; outputs go to ``out/``."""
    from prednas.pipeline import exchange, steps
    from prednas.pipeline import report as reporting
    from prednas.pipeline.config import load_config
    from prednas.pipeline.context import SearchContext
    from prednas.pipeline.state import SearchState

    _use_paced_table()
    work = Path(workdir)
    out = work / "out"
    out.mkdir(exist_ok=True)
    spec, key = load_config(work / "spec.yaml"), (work / "run_key").read_text().strip()

    def sample() -> None:
        context, shards = steps.sample(spec, run_key=key)
        _write(out / "shards.json", shards)
        _write(out / "context.json", context.to_dict())

    _once(work, "sample", out / "context.json", sample)
    context = SearchContext.from_dict(exchange.read_json(out / "context.json"))
    if not (out / "sample-0.json").exists():
        _barrier(work)
    sampled = _evaluate_all(work, context, exchange.read_json(out / "shards.json"), "sample")

    measured, state = sampled, SearchState()
    for r in range(1, spec.rounds + 1):
        state, measured = _round(work, context, state, measured, r, spec.rounds)
    before = SearchState.read(out / f"proposed-{spec.rounds}.json")
    _once(work, "select", out / "report.json",
          lambda: _write(out / "report.json", reporting.select(context, before, measured)))
    _once(work, "close", out / "closed",
          lambda: _write(out / "closed", steps.close(spec.tracking_uri, spec.experiment, key, "SUCCEEDED").encode()))


def _round(work: Path, context: Any, state: Any, measured: list[Any], r: int, rounds: int) -> tuple[Any, list[Any]]:
    """Fit, search and evaluate round ``r``: steps ``fit``, ``search``, ``evaluate-top-k`` (``-r`` after round 1)."""
    from prednas.pipeline import steps
    from prednas.pipeline.state import SearchState

    out, suffix = work / "out", "" if r == 1 else f"-{r}"

    def fit() -> None:
        result = steps.fit_predictors(context, measured, state)
        _write(out / f"main-{r}.pt", result["main"])
        _write(out / f"aux-{r}.pt", result["aux"] or b"")
        _write(out / f"fitted-{r}.json", result["state"].to_dict())

    _once(work, f"fit{suffix}", out / f"fitted-{r}.json", fit)

    def search() -> None:
        after, shards = steps.search(context, (out / f"main-{r}.pt").read_bytes(),
                                     (out / f"aux-{r}.pt").read_bytes() or None,
                                     SearchState.read(out / f"fitted-{r}.json"), rounds)
        _write(out / f"topk-shards-{r}.json", shards)
        _write(out / f"proposed-{r}.json", after.to_dict())

    _once(work, f"search{suffix}", out / f"proposed-{r}.json", search)
    from prednas.pipeline import exchange

    shards = exchange.read_json(out / f"topk-shards-{r}.json")
    return SearchState.read(out / f"proposed-{r}.json"), _evaluate_all(work, context, shards, f"top-k{suffix}")


def _barrier(work: Path, timeout_s: float = 300) -> None:
    """Wait until every run sharing ``$PREDNAS_BENCH_BARRIER`` has sampled (so they evaluate at the same moment)."""
    setting = os.environ.get(BARRIER_ENV)
    if not setting:
        return
    folder, parties = setting.rsplit(":", 1)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / work.name).touch()
    deadline = time.monotonic() + timeout_s
    while len(list(Path(folder).iterdir())) < int(parties) and time.monotonic() < deadline:
        time.sleep(0.005)


def _evaluate_all(work: Path, context: Any, shards: list[str], stage: str) -> list[Any]:
    from prednas.pipeline import exchange, steps

    paths = []
    for i, shard in enumerate(shards):
        path = work / "out" / f"{stage}-{i}.json"

        def evaluate(shard: str = shard, path: Path = path) -> None:
            triplets, _ = steps.evaluate(context, shard)
            exchange.write_triplets(path.with_name(f".{path.name}"), triplets)
            os.replace(path.with_name(f".{path.name}"), path)

        _once(work, f"evaluate-{stage}-{i}", path, evaluate)
        paths.append(path)
    return exchange.read_triplets(paths)


# -- the parent side ------------------------------------------------------------------------
def new_run(root: Path, name: str, *, store_uri: str, tracking_uri: str, seed: int, pace_s: float,
            claim_ttl_s: float = 0.0, barrier: str = "") -> Path:
    """A work folder for one search (spec, run key, settings of the paced evaluator)."""
    import yaml

    from prednas.pipeline.config import load_config

    work = root / name
    work.mkdir(parents=True)
    spec = load_config(None, [*SMALL, f"seed={seed}", f"store_uri={store_uri}", f"tracking_uri={tracking_uri}",
                              f"experiment=reliability-{name}"])
    (work / "spec.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    (work / "run_key").write_text(f"{name}-{seed}")
    (work / "env.json").write_text(json.dumps({PACE_ENV: str(pace_s), TTL_ENV: str(claim_ttl_s),
                                               CALLS_ENV: str(work / "calls"), BARRIER_ENV: barrier}))
    return work


def spawn(work: Path) -> subprocess.Popen[bytes]:
    """Start ``drive(work)`` in a child process (its own process group; output to ``work/log``)."""
    env = {**os.environ, **json.loads((work / "env.json").read_text()), "OMP_NUM_THREADS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    code = f"from prednas.bench.faults import drive; drive({str(work)!r})"
    with open(work / "log", "ab") as log:
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def progress(work: Path) -> list[tuple[float, str, str]]:
    """(time, 'start' | 'done', step) events written so far."""
    path = work / "progress"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(float(t), event, step) for t, event, step in (line.split(" ", 2) for line in lines)]


def calls(work: Path) -> list[str]:
    """Keys of the evaluations this search ran itself (none when another run measured everything)."""
    path = work / "calls"
    return path.read_text().split() if path.exists() else []


def step_seconds(work: Path) -> dict[str, float]:
    """How long each finished step took."""
    started, took = {}, {}
    for t, event, step in progress(work):
        if event == "start":
            started[step] = t
        elif step in started:
            took[step] = t - started[step]
    return took


def complete(work: Path, timeout_s: float = 600) -> None:
    """Run (or resume) the search to the end; a failure raises with the log's tail."""
    proc = spawn(work)
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = "timeout"
    if code != 0:
        tail = (work / "log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"search in {work} failed ({code}):\n{tail}")


def kill_during(work: Path, target: str, delay_s: float, timeout_s: float = 600) -> str:
    """Resume the search, SIGKILL it ``delay_s`` after a step named ``target*`` starts; returns where it died."""
    seen = len(progress(work))
    proc = spawn(work)
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if any(event == "start" and step.startswith(target) for _, event, step in progress(work)[seen:]):
            time.sleep(delay_s)
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        return "after the end" if proc.returncode == 0 else f"crashed ({proc.returncode})"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    events = progress(work)[seen:]
    open_steps = [s for _, e, s in events if e == "start" and not any(e2 == "done" and s2 == s for _, e2, s2 in events)]
    return open_steps[-1] if open_steps else "between steps"


def load_spec(work: Path) -> Any:
    """The search spec of the run in ``work``."""
    from prednas.pipeline.config import load_config

    return load_config(work / "spec.yaml")


def _same_run(work: Path) -> tuple[Any, Any, str]:
    from prednas.pipeline.context import SearchContext
    from prednas.pipeline.exchange import read_json

    spec = load_spec(work)
    return spec, SearchContext.from_dict(read_json(work / "out" / "context.json")), spec.store_uri


def run_triplets(work: Path) -> list[Any]:
    """Every triplet of the run in ``work`` in its store (both stages)."""
    from prednas.pipeline.context import stage
    from prednas.store import open_store

    spec, context, _ = _same_run(work)
    hashes = {stage(spec, s).hash for s in ("sample", "top-k")}
    store = open_store(spec.store_uri)
    return [t for h in hashes for t in store.list(spec.space, h) if t.run_id == context.parent_run_id]


def handed_on(work: Path) -> set[str]:
    """``arch_id/trial`` of every triplet the run's evaluate steps handed on (every stage and round)."""
    outputs = (f for f in (work / "out").glob("*-[0-9]*.json") if f.name.startswith(("sample-", "top-k")))
    return {f"{t['arch_id']}/{t['trial']}" for f in outputs for t in json.loads(f.read_text())}


def outcome(work: Path) -> dict[str, Any]:
    """What must not depend on interruptions: the measured architectures, the search's picks, the choice."""
    from prednas.pipeline.exchange import read_json

    spec = load_spec(work)
    report = read_json(work / "out" / "report.json")
    picks = read_json(work / "out" / f"proposed-{spec.rounds}.json")["picks"]
    measured = sorted((t.arch_id, t.stage, t.accuracy) for t in run_triplets(work))
    return {"best": (report["best"]["arch_id"], report["best"]["accuracy"]), "picks": [p["arch"] for p in picks],
            "predicted": [p["predicted"] for p in picks], "measured": measured}


def children(work: Path) -> tuple[int, int]:
    """MLflow child runs of the run in ``work``: how many, how many distinct (arch, stage, trial)."""
    from prednas.tracking import Tracker
    from prednas.tracking.runs import identity_of

    spec, context, _ = _same_run(work)
    found = Tracker(spec.tracking_uri, spec.experiment).children(context.parent_run_id)
    return len(found), len({identity_of(r) for r in found})


def tracking_template(root: Path) -> Path:
    """A SQLite MLflow database with its schema created once (copied for each search: creating one takes seconds)."""
    from prednas.tracking import Tracker

    path = root / "template.db"
    Tracker(f"sqlite:///{path}", "warm-up")
    return path


def fresh_tracking(template: Path, target: Path) -> str:
    """A copy of the template database, as a tracking URI."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"
