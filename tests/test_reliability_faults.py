"""Faults at the pipeline level: killed steps, overlapping runs, corrupt objects, MLflow going away.

The store-level faults (S3 outages, concurrent writers on one shard, MLflow outage of the
tracker alone) are in ``tests/integration/test_faults.py``; here the faults hit the
pipeline's own step functions, run as processes (``prednas.bench.faults.drive``, which
publishes each step's outputs atomically and resumes at the first step without them, as
a retried KFP task does). Every count below is read back from the store or from MLflow.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pipeline_checks import shared_tracking, small_spec

from prednas.bench import faults
from prednas.errors import PredNASError
from prednas.pipeline import exchange, steps
from prednas.pipeline.context import stage
from prednas.store import open_store
from prednas.tracking import Tracker, model_name


def _store_trials(work: Path) -> list:
    spec = faults.load_spec(work)
    store = open_store(spec.store_uri)
    return [t for h in {stage(spec, s).hash for s in ("sample", "top-k")} for t in store.list(spec.space, h)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite schema created once, copied for each search."""
    return faults.tracking_template(tmp_path_factory.mktemp("tracking"))


def _run(root: Path, template: Path, name: str, *, store: str | None = None, tracking: str | None = None,
         claim_ttl_s: float = 0.0, barrier: str = "") -> Path:
    return faults.new_run(root, name, store_uri=store or str(root / f"store-{name}"),
                          tracking_uri=tracking or faults.fresh_tracking(template, root / f"{name}.db"),
                          seed=3, pace_s=0.1, claim_ttl_s=claim_ttl_s, barrier=barrier)


@pytest.mark.slow
def test_sigkill_in_every_kind_of_step_resumes_to_the_uninterrupted_result(tmp_path: Path, template: Path) -> None:
    baseline = _run(tmp_path, template, "uninterrupted")
    faults.complete(baseline)
    expected, seconds = faults.outcome(baseline), faults.step_seconds(baseline)
    rng = np.random.default_rng(11)
    work = _run(tmp_path, template, "killed")
    landed = []
    for target in ("evaluate-sample", "fit", "search", "evaluate-top-k"):
        longest = max(s for step, s in seconds.items() if step.startswith(target))
        landed.append(faults.kill_during(work, target, float(rng.uniform(0, longest))))
    print(f"SIGKILL landed in: {landed}")
    assert all(step not in ("after the end",) and not step.startswith("crashed") for step in landed), landed
    assert sum(step.startswith(("evaluate", "fit", "search")) for step in landed) >= 3, landed
    faults.complete(work)

    assert faults.outcome(work) == expected  # measured archs and accuracies, picks, predictions, the choice
    ours = faults.run_triplets(work)
    spec = faults.load_spec(work)
    assert len(ours) == spec.n + spec.k == len({(t.arch_id, t.stage) for t in ours})  # none lost, none twice
    assert len(_store_trials(work)) == spec.n + spec.k and open_store(spec.store_uri).verify() == []
    assert faults.children(work) == (spec.n + spec.k, spec.n + spec.k)  # MLflow: one child each, none twice
    calls = faults.calls(work)
    assert len(calls) >= spec.n + spec.k
    assert len(calls) - len(set(calls)) <= 2  # at most the evaluations the two evaluate kills interrupted


def _concurrent(tmp_path: Path, template: Path, store: str, claim_ttl_s: float,
                tracking: str | None = None) -> tuple[list[Path], list, list[str]]:
    barrier = f"{tmp_path / 'barrier'}:2"  # both sample, then both start evaluating at the same moment
    works = [_run(tmp_path, template, f"run-{i}", store=store, claim_ttl_s=claim_ttl_s, tracking=tracking,
                  barrier=barrier) for i in range(2)]
    procs = [faults.spawn(w) for w in works]
    for proc, work in zip(procs, works, strict=True):
        assert proc.wait(600) == 0, (work / "log").read_text()[-2000:]
    calls = [c for w in works for c in faults.calls(w)]
    return works, _store_trials(works[0]), calls


@pytest.mark.slow
@pytest.mark.parametrize("claims", [False, True], ids=["no-claims", "claims"])
def test_two_runs_at_once_lose_nothing(tmp_path: Path, template: Path, claims: bool) -> None:
    works, trials, calls = _concurrent(tmp_path, template, str(tmp_path / "shared-store"), 10.0 if claims else 0.0)
    assert len(trials) == len(calls)  # every evaluation is stored exactly once, none overwritten
    assert set().union(*map(faults.handed_on, works)) <= {f"{t.arch_id}/{t.trial}" for t in trials}
    assert open_store(str(tmp_path / "shared-store")).verify() == []
    per_arch = Counter((t.config_hash, t.arch_id) for t in trials)
    twice = [key for key, count in per_arch.items() if count > 1]
    print(f"{'claims' if claims else 'no claims'}: {len(calls)} evaluations, {len(per_arch)} architectures, "
          f"{len(twice)} measured by both runs")
    if claims:
        assert twice == []  # a leased architecture is waited for, then reused
    else:
        assert twice, "the runs never evaluated an architecture at the same moment: the test proves nothing"
        assert all(len({t.run_id for t in trials if (t.config_hash, t.arch_id) == key}) == 2 for key in twice)


@pytest.mark.slow
@pytest.mark.integration
def test_two_runs_at_once_on_real_servers(tmp_path: Path, template: Path, mlflow_server, s3_env,
                                          s3_prefix: str) -> None:
    works, trials, calls = _concurrent(tmp_path, template, s3_env.uri(s3_prefix), 0.0,
                                       tracking=mlflow_server.tracking_uri)
    assert len(trials) == len(calls)
    assert set().union(*map(faults.handed_on, works)) <= {f"{t.arch_id}/{t.trial}" for t in trials}
    assert open_store(s3_env.uri(s3_prefix)).verify() == []
    spec = faults.load_spec(works[0])
    for work in works:  # one child per architecture the run used, whichever run measured it
        assert faults.children(work) == (spec.n + spec.k, spec.n + spec.k)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the in-process searches."""
    return shared_tracking(tmp_path_factory)


def _truncate(store_root: Path, key: str) -> None:
    path = store_root / key
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # what a writer killed mid-write leaves without the atomic rename


@pytest.mark.parametrize("damage", ["truncated", "garbage", "half-written-temp"])
def test_corrupt_objects_are_reported_and_never_fitted(tmp_path: Path, tracking: str, damage: str) -> None:
    spec = small_spec(tmp_path, tracking_uri=tracking)
    context, shards = steps.sample(spec, run_key="corrupt")
    sampled = [t for shard in shards for t in steps.evaluate(context, shard)[0]]
    root, victim = Path(spec.store_uri), sampled[0]
    if damage == "truncated":
        _truncate(root, victim.key)
        bad = victim.key
    elif damage == "garbage":
        bad = victim.key.replace(victim.arch_id, "f" * 16).replace(victim.trial, "0" * 32)
        (root / bad).parent.mkdir(parents=True)
        (root / bad).write_bytes(b"\x00\x01 hand-written garbage")
    else:  # a killed atomic writer leaves only its hidden temporary file: not an object at all
        hidden = (root / victim.key).with_name(f".{victim.trial}.json.1234.tmp")
        hidden.write_text(victim.to_json()[:100])
        bad = None
    client = Tracker(spec.tracking_uri, spec.experiment).client
    versions = len(client.search_model_versions(f"name='{model_name(spec.space, 'accuracy')}'"))
    store = open_store(spec.store_uri)
    if bad is None:
        assert store.verify() == [] and len(store.list(spec.space, victim.config_hash)) == spec.n
        steps.fit_predictors(context, sampled)
        return
    with pytest.raises(PredNASError, match=bad.rsplit("/", 1)[1]) as raised:
        steps.fit_predictors(context, sampled)
    assert "\n" not in str(raised.value)
    assert [key for key, _ in store.verify()] == [bad]
    after = len(client.search_model_versions(f"name='{model_name(spec.space, 'accuracy')}'"))
    assert after == versions, "a predictor was registered from a corrupt store"
    with pytest.raises(PredNASError, match="corrupt triplet"):  # a new run refuses it as well
        steps.sample(spec, run_key="corrupt-rerun")


@pytest.mark.slow
@pytest.mark.integration
def test_mlflow_outage_during_the_pipeline_stores_first_and_catches_up(tmp_path: Path, mlflow_server, s3_env,
                                                                       s3_prefix: str, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    spec = small_spec(tmp_path, tracking_uri=mlflow_server.tracking_uri, store_uri=s3_env.uri(s3_prefix))
    context, shards = steps.sample(spec, run_key="outage")
    first, _ = steps.evaluate(context, shards[0])
    mlflow_server.stop()
    try:
        with pytest.raises(PredNASError, match="unreachable") as raised:
            steps.evaluate(context, shards[1])
        assert "\n" not in str(raised.value)
    finally:
        mlflow_server.start()
    store = open_store(spec.store_uri)
    hash_ = stage(spec, "sample").hash
    assert len(store.list(spec.space, hash_)) == spec.n  # the failed step's measurements were stored first
    second, metrics = steps.evaluate(context, shards[1])  # the retried step
    assert metrics["evaluated"] == 0 and metrics["reused"] == len(second)
    steps.evaluate(context, shards[1])  # and once more: still no duplicate child
    fit = steps.fit_predictors(context, [*first, *second])
    _, topk_shards = steps.search(context, fit["main"], fit["aux"], fit["state"])
    for shard in topk_shards:
        steps.evaluate(context, shard)
    children = Tracker(spec.tracking_uri, spec.experiment).children(context.parent_run_id)
    identities = Counter((c.data.tags["prednas.arch_id"], c.data.tags["prednas.stage"]) for c in children)
    assert len(children) == spec.n + spec.k and set(identities.values()) == {1}
    assert len(exchange.unique_by_key(store.list(spec.space, hash_))) == spec.n + spec.k
