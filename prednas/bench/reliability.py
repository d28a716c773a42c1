"""``prednas bench reliability``: faults injected into a search, and what survives them (issue 6).

Every scenario runs a small NB201 search (``prednas.bench.faults.SMALL``: N=6, K=4, two
shards) through the library's step functions, on a local triplet store and a SQLite
MLflow store in a scratch folder, and compares it with an uninterrupted run of the same
seed:

- **SIGKILL** (``runs`` times): the step process is killed at a uniformly random moment
  inside a sample-stage evaluate, the predictor fit, the search and a top-K evaluate, one
  after another, each rerun resuming at the killed step. The final result (measured
  architectures and accuracies, the search's picks and predictions, the chosen
  architecture) must equal the uninterrupted run's, and the store must hold each of the
  run's N + K measurements exactly once.
- **MLflow unreachable** while a shard is evaluated: the step fails in one line with its
  measurements already stored; the rerun logs them once and the search completes as the
  uninterrupted run did.
- **Two runs at once** on one store, same seed: with claims (an evaluator that leases
  each architecture) nothing is measured twice; without, architectures both start at the
  same moment are measured by both and both trials are kept. Every evaluator call must
  leave exactly one stored triplet.
- **Corrupt objects**: a stored triplet truncated in place (a writer without the atomic
  rename) and a garbage object: the fit step must refuse the store, naming the key, and
  register no predictor; ``verify`` lists both.
- **Bad inputs** per registered space (``prednas.bench.badinput``).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from prednas.bench import faults
from prednas.errors import PredNASError

KILLS = {"evaluate-sample": "SIGKILL in evaluate (sample stage)", "fit": "SIGKILL in fit",
         "search": "SIGKILL in search", "evaluate-top-k": "SIGKILL in evaluate (top-K stage)"}


def _row(fault: str, injected: int, expected: int | None, stored: int | None, duplicates: int | None,
         same: bool | None, notes: str) -> dict[str, Any]:
    return {"fault": fault, "injected": injected, "expected": expected, "stored": stored, "duplicates": duplicates,
            "same_result": same, "notes": notes}


def _counts(work: Path) -> tuple[int, int]:
    """Triplets of the run in its store, and how many repeat an (architecture, stage) already counted."""
    triplets = faults.run_triplets(work)
    return len(triplets), len(triplets) - len({(t.arch_id, t.stage) for t in triplets})


class Bench:
    """A scratch folder, a pre-built MLflow schema and the uninterrupted baseline run."""

    def __init__(self, root: Path, seed: int, pace_s: float) -> None:
        self.root, self.seed, self.pace_s = root, seed, pace_s
        self.template = faults.tracking_template(root)
        self.baseline = self.new("uninterrupted")
        faults.complete(self.baseline)
        self.expected = faults.outcome(self.baseline)
        self.seconds = faults.step_seconds(self.baseline)
        self.size = len(self.expected["measured"])

    def new(self, name: str, *, store: str | None = None, claim_ttl_s: float = 0.0, barrier: str = "") -> Path:
        """A work folder for a search with its own tracking database (and store, unless shared)."""
        return faults.new_run(self.root, name, store_uri=store or str(self.root / f"store-{name}"),
                              tracking_uri=faults.fresh_tracking(self.template, self.root / f"{name}.db"),
                              seed=self.seed, pace_s=self.pace_s, claim_ttl_s=claim_ttl_s, barrier=barrier)


def kill_rows(bench: Bench, runs: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """SIGKILL inside each kind of step, ``runs`` times; every run resumed to the end and compared."""
    landed: dict[str, list[str]] = {target: [] for target in KILLS}
    same, stored, duplicates, children = [], 0, 0, []
    for r in range(runs):
        work = bench.new(f"killed-{r}")
        for target in KILLS:
            longest = max(s for step, s in bench.seconds.items() if step.startswith(target))
            landed[target].append(faults.kill_during(work, target, float(rng.uniform(0.0, max(longest, 0.01)))))
        faults.complete(work)
        same.append(faults.outcome(work) == bench.expected)
        count, dup = _counts(work)
        stored, duplicates = stored + count, duplicates + dup
        children.append(faults.children(work))
    rows = []
    for target, fault in KILLS.items():
        missed = [step for step in landed[target] if not step.startswith(target)]
        elsewhere = f" (the others in: {', '.join(missed)})" if missed else ""
        notes = (f"landed in the step {runs - len(missed)}/{runs}{elsewhere}; MLflow children (total, distinct): "
                 f"{children}")
        rows.append(_row(fault, runs, runs * bench.size, stored, duplicates, all(same), notes))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outage_row(bench: Bench) -> dict[str, Any]:
    """MLflow unreachable during the first evaluate: stored first, caught up on rerun, same result."""
    from prednas.pipeline import exchange, steps
    from prednas.pipeline.config import load_config
    from prednas.pipeline.context import SearchContext

    work = bench.new("mlflow-outage")
    spec = load_config(work / "spec.yaml")
    context, shards = steps.sample(spec, run_key=(work / "run_key").read_text())
    (work / "out").mkdir()
    exchange.write_json(work / "out" / "shards.json", shards)
    exchange.write_json(work / "out" / "context.json", context.to_dict())
    down = SearchContext(replace(spec, tracking_uri=f"http://127.0.0.1:{_free_port()}"), context.run_key,
                         context.parent_run_id, context.started_at)
    try:
        steps.evaluate(down, shards[0])
        failure = "the step did not fail"
    except PredNASError as exc:
        failure = str(exc)
    kept = len(faults.run_triplets(work))
    faults.complete(work)
    count, dup = _counts(work)
    total, distinct = faults.children(work)
    notes = (f"step failed in one line: {'yes' if 'unreachable' in failure and chr(10) not in failure else 'NO'}; "
             f"{kept}/{len(exchange.parse_shard(shards[0])[2])} of its shard stored before tracking; "
             f"MLflow children after rerun: {total} ({distinct} distinct)")
    return _row("MLflow unreachable during evaluate", 1, bench.size, count, dup + total - distinct,
                faults.outcome(work) == bench.expected, notes)


def concurrent_row(bench: Bench, claims: bool) -> dict[str, Any]:
    """Two runs with the same seed started at once on one store."""
    from prednas.pipeline.config import load_config
    from prednas.pipeline.context import stage
    from prednas.store import open_store

    name = "claims" if claims else "no-claims"
    store = str(bench.root / f"store-concurrent-{name}")
    barrier = f"{bench.root / f'barrier-{name}'}:2"  # both sample first, then evaluate at the same moment
    works = [bench.new(f"concurrent-{name}-{i}", store=store, claim_ttl_s=10.0 if claims else 0.0, barrier=barrier)
             for i in range(2)]
    procs = [faults.spawn(w) for w in works]
    codes = [p.wait(600) for p in procs]
    if any(codes):
        raise RuntimeError(f"a concurrent run failed: see {works[codes.index(next(c for c in codes if c))]}/log")
    calls = sum(len(faults.calls(w)) for w in works)
    spec = load_config(works[0] / "spec.yaml")
    opened = open_store(store)
    hashes = {stage(spec, s).hash for s in ("sample", "top-k")}
    triplets = [t for h in hashes for t in opened.list(spec.space, h)]
    per_arch = Counter((t.config_hash, t.arch_id) for t in triplets)
    both = sum(1 for c in per_arch.values() if c > 1)
    referenced = set().union(*(faults.handed_on(w) for w in works))
    kept = referenced <= {f"{t.arch_id}/{t.trial}" for t in triplets}
    notes = (f"evaluator calls {calls}; measured by both runs: {both}; every trial the runs used is stored: "
             f"{'yes' if kept else 'NO'}; corrupt objects: {len(opened.verify())}")
    return _row(f"two runs at once, {'with' if claims else 'without'} claims", 1, calls, len(triplets),
                len(triplets) - len(per_arch), None, notes)


def corrupt_row(bench: Bench) -> dict[str, Any]:
    """A truncated and a garbage object in the store: the fit step refuses them and registers nothing."""
    from prednas.pipeline import steps
    from prednas.pipeline.config import load_config
    from prednas.store import open_store
    from prednas.tracking import Tracker, model_name

    work = bench.new("corrupt")
    spec = load_config(work / "spec.yaml")
    context, shards = steps.sample(spec, run_key=(work / "run_key").read_text())
    sampled = [t for shard in shards for t in steps.evaluate(context, shard)[0]]
    store = open_store(spec.store_uri)
    victim = sampled[0]
    store_path = Path(spec.store_uri)
    text = (store_path / victim.key).read_text()
    (store_path / victim.key).write_text(text[: len(text) // 2])  # a writer killed mid-write, without the rename
    garbage = victim.key.replace(victim.arch_id, "f" * 16).replace(victim.trial, "0" * 32)
    (store_path / garbage).parent.mkdir(parents=True)
    (store_path / garbage).write_bytes(b"\x00\x01 hand-written garbage")
    tracker = Tracker(spec.tracking_uri, spec.experiment)
    name = model_name(spec.space, "accuracy")

    def versions() -> int:
        return len(tracker.client.search_model_versions(f"name='{name}'"))

    before = versions()
    try:
        steps.fit_predictors(context, sampled)
        refusal = "NOT refused: the fit used the store"
    except PredNASError as exc:
        refusal = f"fit refused: {str(exc)[:70]}..."
    problems = store.verify()
    notes = f"{refusal}; predictor versions registered meanwhile: {versions() - before}"
    detected = len({key for key, _ in problems} & {victim.key, garbage})
    notes = f"detected {detected}/2 by key; " + notes
    return _row("corrupt objects (truncated, garbage)", 2, None, None, None, None, notes)


def run_reliability(*, runs: int = 2, inputs: int = 100, seed: int = 0, pace_s: float = 0.1,
                    progress: Any = None) -> dict[str, Any]:
    """Every scenario; returns the fault rows, the bad-input rows and the settings."""
    from prednas.bench.badinput import bad_input_rows

    tick = progress or (lambda name: None)
    started = time.time()
    root = Path(tempfile.mkdtemp(prefix="prednas-reliability-"))
    try:
        tick("uninterrupted baseline")
        bench = Bench(root, seed, pace_s)
        rows = []
        tick(f"SIGKILL x {len(KILLS) * runs}")
        rows += kill_rows(bench, runs, np.random.default_rng([seed, 1]))
        tick("MLflow outage")
        rows.append(outage_row(bench))
        for claims in (True, False):
            tick(f"two runs at once ({'with' if claims else 'without'} claims)")
            rows.append(concurrent_row(bench, claims))
        tick("corrupt objects")
        rows.append(corrupt_row(bench))
        tick("bad inputs")
        inputs_rows = bad_input_rows(inputs, seed)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"runs": runs, "inputs": inputs, "seed": seed, "pace_s": pace_s, "n_plus_k": bench.size,
            "faults": rows, "bad_inputs": inputs_rows, "seconds": time.time() - started}


def print_reliability(report: dict[str, Any], console: Any = None) -> None:
    """The fault table and the bad-input table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=200)
    table = Table(title=f"faults | NB201 search, N + K = {report['n_plus_k']} | seed {report['seed']} | "
                        f"evaluations paced at {report['pace_s']} s", title_justify="left")
    for head in ("fault", "injected", "triplets expected", "stored", "duplicates", "result = uninterrupted",
                 "notes"):
        table.add_column(head, justify="left" if head in ("fault", "notes") else "right", overflow="fold")
    for r in report["faults"]:
        same = "-" if r["same_result"] is None else "yes" if r["same_result"] else "NO"
        table.add_row(r["fault"], str(r["injected"]), *("-" if r[k] is None else str(r[k])
                                                        for k in ("expected", "stored", "duplicates")), same,
                      r["notes"])
    console.print(table)
    inputs = Table(title=f"bad inputs | {report['inputs']} per kind (architecture, encoding, config) per space",
                   title_justify="left")
    for head in ("space", "tried", "valid result", "PredNASError (one line)", "proper", "other outcome"):
        inputs.add_column(head, justify="left" if head in ("space", "other outcome") else "right")
    for r in report["bad_inputs"]:
        others = ", ".join(f"{k} x{v}" for k, v in r["other_types"].items()) or "none"
        inputs.add_row(r["space"], str(r["tried"]), str(r["valid"]), str(r["error"]),
                       f"{r['valid'] + r['error']}/{r['tried']}", others)
    console.print(inputs)
    console.print(f"{report['seconds']:.0f} s in total")
