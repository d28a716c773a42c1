"""Faults against the real servers: S3 going away, MLflow going away, concurrent writers.

A shard of NB201 architectures is evaluated the way a pipeline step does it: look the
architecture up in the store, evaluate only when it is missing, store the triplet before
moving on, then mirror the stored triplets into MLflow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from prednas.errors import PredNASError
from prednas.evaluators.base import config_hash
from prednas.evaluators.nb201_table import NB201TableEvaluator
from prednas.spaces import arch_id, get_space
from prednas.store import Triplet, TripletStore, open_store
from prednas.tracking import Tracker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPACE = get_space("nb201")


class CountingEvaluator(NB201TableEvaluator):
    """The NB201 table, recording every call (re-evaluations included)."""

    def __init__(self) -> None:
        super().__init__("cifar10")
        self.calls: list[str] = []

    def evaluate(self, space, arch):  # the Evaluator protocol
        self.calls.append(str(arch))
        return super().evaluate(space, arch)


def shard(n: int, seed: int = 7) -> list:
    """``n`` distinct NB201 cells."""
    rng = np.random.default_rng(seed)
    return list({str(a): a for a in (SPACE.sample(rng) for _ in range(4 * n))}.values())[:n]


def evaluate_shard(store: TripletStore, evaluator: CountingEvaluator, archs: list, *,
                   before: Callable[[int], None] = lambda i: None) -> list[Triplet]:
    """Evaluate what the store lacks, storing each triplet before the next; returns the shard's triplets."""
    config = evaluator.config()
    out = []
    for i, arch in enumerate(archs):
        before(i)
        found = store.lookup(SPACE.name, config_hash(config), arch_id(SPACE, arch))
        if found is None:
            found = Triplet.create(SPACE, arch, config, evaluator.evaluate(SPACE, arch), stage="sample")
            store.put(found)
        out.append(found)
    return out


@pytest.fixture
def fault_env(fault_s3_server, monkeypatch: pytest.MonkeyPatch):
    """A private S3 server in the environment."""
    for name, value in fault_s3_server.env.items():
        monkeypatch.setenv(name, value)
    return fault_s3_server


def test_brief_s3_outage_is_retried(fault_env) -> None:
    store = open_store(fault_env.uri("run"))
    archs = shard(4)
    evaluate_shard(store, CountingEvaluator(), archs[:2])
    fault_env.stop()
    restart = threading.Timer(1.0, fault_env.start)
    restart.start()
    start = time.monotonic()
    evaluate_shard(store, CountingEvaluator(), archs)  # blocks in botocore's retries, then succeeds
    restart.join()
    print(f"brief outage: rode out {time.monotonic() - start:.1f}s of S3 downtime and restart")
    assert len(fault_env.keys("run/triplets/")) == 4


def test_long_s3_outage_fails_clearly_and_rerun_stores_each_triplet_once(fault_env, monkeypatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    archs = shard(8)
    first = CountingEvaluator()

    def outage(i: int) -> None:
        if i == 5:
            fault_env.stop()

    start = time.monotonic()
    with pytest.raises(PredNASError, match=r"S3 endpoint .* unreachable .* after 3 attempts") as raised:
        evaluate_shard(open_store(fault_env.uri("run")), first, archs, before=outage)
    assert "\n" not in str(raised.value) and fault_env.env["AWS_SECRET_ACCESS_KEY"] not in str(raised.value)
    print(f"long outage: failed after {time.monotonic() - start:.1f}s: {raised.value}")
    fault_env.start()
    rerun = CountingEvaluator()
    triplets = evaluate_shard(open_store(fault_env.uri("run")), rerun, archs)
    assert len(first.calls) == 5 and sorted(rerun.calls) == sorted(str(a) for a in archs[5:])
    keys = fault_env.keys("run/triplets/")
    assert len(keys) == 8 and len({k.rsplit("/", 2)[1] for k in keys}) == 8  # every arch exactly once
    assert sorted(t.key for t in triplets) == sorted(k.removeprefix("run/") for k in keys)
    assert open_store(fault_env.uri("run")).verify() == []


def test_mlflow_outage_then_catch_up_without_duplicates(mlflow_server, s3_env, s3_prefix, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    store = open_store(s3_env.uri(s3_prefix))
    tracker = Tracker(mlflow_server.tracking_uri, "prednas-faults")
    parent = tracker.start_parent("outage", {"n": 6}, {})
    stored = evaluate_shard(store, CountingEvaluator(), shard(6, seed=11))  # the store first
    tracker.log_triplets(parent, stored[:3])
    mlflow_server.stop()
    try:
        refused = r"MLflow at .* failed to .*: server unreachable \(\[Errno 111\] Connection refused\)"
        with pytest.raises(PredNASError, match=refused) as raised:
            tracker.log_triplets(parent, stored)
        assert "\n" not in str(raised.value)
        with pytest.raises(PredNASError, match="unreachable"):
            Tracker(mlflow_server.tracking_uri, "prednas-faults")
    finally:
        mlflow_server.start()
    assert len(store.list(SPACE.name, stored[0].config_hash)) == 6  # nothing measured was lost
    rerun = Tracker(mlflow_server.tracking_uri, "prednas-faults")
    rerun.attach(parent)
    ids = rerun.log_triplets(parent, store.list(SPACE.name, stored[0].config_hash))
    assert sorted(rerun.log_triplets(parent, stored)) == sorted(ids)  # and once more: still no duplicate
    children = rerun.children(parent)
    assert len(children) == 6 == len({c.data.tags["prednas.arch_id"] for c in children})
    assert sorted(c.info.run_id for c in children) == sorted(ids)


def test_concurrent_runs_keep_every_trial(s3_env, s3_prefix) -> None:
    archs = shard(10, seed=3)
    evaluators = [CountingEvaluator(), CountingEvaluator()]
    errors: list[BaseException] = []

    def run(evaluator: CountingEvaluator, order: list) -> None:
        try:
            evaluate_shard(open_store(s3_env.uri(s3_prefix)), evaluator, order)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(evaluators[0], archs)),
               threading.Thread(target=run, args=(evaluators[1], archs[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = open_store(s3_env.uri(s3_prefix))
    stored = store.list(SPACE.name, config_hash(evaluators[0].config()))
    calls = len(evaluators[0].calls) + len(evaluators[1].calls)
    assert len(stored) == calls  # every evaluation is kept: a collision gives two trials, never one lost
    assert {t.arch_id for t in stored} == {arch_id(SPACE, a) for a in archs} and store.verify() == []

