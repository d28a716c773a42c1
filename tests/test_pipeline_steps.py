"""The pipeline's steps called from Python: a whole search, reruns, warm starts, a killed step, a failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pipeline_checks import check_tracking, shared_tracking, small_spec, stored_trials

from prednas.errors import PredNASError
from prednas.evaluators.nb201_table import NB201TableEvaluator
from prednas.pipeline import report as reporting
from prednas.pipeline import steps
from prednas.pipeline.inprocess import run_inprocess
from prednas.pipeline.local import preflight


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the module's searches (each in its own experiment)."""
    return shared_tracking(tmp_path_factory)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every NB201 table evaluation made in this process."""
    made: list[str] = []
    original = NB201TableEvaluator.evaluate

    def counting(self, space, arch):  # the Evaluator protocol
        made.append(str(arch))
        return original(self, space, arch)

    monkeypatch.setattr(NB201TableEvaluator, "evaluate", counting)
    return made


@pytest.mark.slow
def test_search_then_rerun_then_warm_start(tmp_path: Path, tracking: str, calls: list[str]) -> None:
    spec = small_spec(tmp_path, tracking_uri=tracking)
    preflight(spec)
    report = run_inprocess(spec, run_key="first")
    assert len(calls) == spec.n + spec.k == len(set(calls))
    check_tracking(spec, report)
    assert report["best"]["accuracy"] == max(r["accuracy"] for r in report["table"])

    again = run_inprocess(spec, run_key="first")  # the same run again (a retried pipeline)
    assert len(calls) == spec.n + spec.k, "a rerun of the same run measured something again"
    assert again["parent_run_id"] == report["parent_run_id"] and again["best"] == report["best"]

    warm = run_inprocess(spec, run_key="second")  # a new run on the same store
    assert len(calls) == 2 * (spec.n + spec.k)
    assert set(stored_trials(spec).values()) == {1}, "an architecture was measured twice"
    assert warm["metrics"]["warm_start"] == spec.n + spec.k
    assert warm["best"]["accuracy"] >= report["best"]["accuracy"]


def test_failed_search_closes_its_run_as_failed(tmp_path: Path, tracking: str) -> None:
    from mlflow import MlflowClient

    spec = small_spec(tmp_path, "alphas=[0, 0.5]", "predictor.aux_target=latency_ms", tracking_uri=tracking)
    with pytest.raises(PredNASError, match="a latency predictor needs a positive 'latency_ms'"):
        run_inprocess(spec, run_key="doomed")
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name(spec.experiment).experiment_id],
                              "tags.`prednas.run_key` = 'doomed' and tags.`prednas.kind` = 'search'")
    assert [r.info.status for r in runs] == ["FAILED"]  # the parent (its children carry the run key too)


def test_cost_constrained_search_fits_the_auxiliary_predictor_and_keeps_the_window(tmp_path: Path,
                                                                                   tracking: str) -> None:
    from prednas.pipeline.context import stage

    window = "cost={metric: flops, target: 2.5e8, window: 6.0e7, sample_in_window: false}"  # samples: whole space
    spec = small_spec(tmp_path, "alphas=[0, 0.5]", window, "rounds=1", tracking_uri=tracking)
    preflight(spec)
    context, shards = steps.sample(spec, run_key="constrained")
    sampled = [t for shard in shards for t in steps.evaluate(context, shard)[0]]
    fit = steps.fit_predictors(context, sampled)
    assert set(fit["versions"]) == {"accuracy", "flops"} and fit["aux"] is not None
    assert fit["metrics"]["flops_heldout_kendall_tau"] > 0.5  # log-FLOPs ranked on 500 unseen cells
    state, topk_shards = steps.search(context, fit["main"], fit["aux"], fit["state"], 1)
    space = stage(spec, "sample").space
    in_pool = [space.from_dict(p["arch"]) for p in state.picks[: int(state.stats[0]["from_pool"])]]
    assert in_pool and all(abs(space.cost(a)["flops"] - 2.5e8) <= 6.0e7 for a in in_pool)
    topk = [t for shard in topk_shards for t in steps.evaluate(context, shard)[0]]
    best = reporting.select(context, state, topk)["best"]
    assert abs(best["cost"]["flops"] - 2.5e8) <= 6.0e7  # random samples outside the window are never the answer
    outside = [t for t in [*sampled, *topk] if abs(t.cost["flops"] - 2.5e8) > 6.0e7]
    assert outside  # the check above had something to exclude
    steps.close(spec.tracking_uri, spec.experiment, "constrained", "SUCCEEDED")


SLOW_EVALUATOR = """
import time
from prednas.evaluators.nb201_table import NB201TableEvaluator

class SlowTable(NB201TableEvaluator):
    def evaluate(self, space, arch):
        time.sleep(0.4)
        return super().evaluate(space, arch)
"""

STEP = """
import sys
from prednas.evaluators import registry
from prednas.pipeline import steps
from prednas.pipeline.context import SearchContext

registry.register_evaluator("nb201-table", "slow_table:SlowTable", spaces=("nb201",), options=("dataset", "signal"))
steps.evaluate(SearchContext.read(sys.argv[1]), open(sys.argv[2]).read())
"""


@pytest.mark.slow
def test_step_killed_halfway_through_its_shard_resumes_without_remeasuring(tmp_path: Path, tracking: str,
                                                                          calls: list[str]) -> None:
    spec = small_spec(tmp_path, "n=10", "shards=1", tracking_uri=tracking)
    preflight(spec)
    context, (shard,) = steps.sample(spec, run_key="killed")
    context.write(tmp_path / "context.json")
    (tmp_path / "shard.json").write_text(shard)
    (tmp_path / "slow_table.py").write_text(textwrap.dedent(SLOW_EVALUATOR))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    step = subprocess.Popen([sys.executable, "-c", STEP, str(tmp_path / "context.json"), str(tmp_path / "shard.json")],
                            env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while sum(stored_trials(spec).values()) < 4 and time.monotonic() < deadline and step.poll() is None:
        time.sleep(0.1)
    os.killpg(step.pid, signal.SIGKILL)  # mid-shard, between or during evaluations
    step.wait()
    before = sum(stored_trials(spec).values())
    assert 4 <= before < spec.n, f"the step was not killed halfway ({before} of {spec.n} stored)"

    triplets, metrics = steps.evaluate(context, shard)  # the retry
    assert len(triplets) == spec.n and len(calls) == spec.n - before
    assert metrics["reused"] == before and metrics["evaluated"] == spec.n - before
    trials = stored_trials(spec)
    assert len(trials) == spec.n and set(trials.values()) == {1}


@pytest.fixture
def claiming_evaluator() -> str:
    """The NB201 table registered as an evaluator slow enough to claim architectures (2 s lease)."""
    from prednas.evaluators import registry

    registry.register_evaluator("nb201-claimed", "prednas.evaluators.nb201_table:NB201TableEvaluator",
                                spaces=("nb201",), options=("dataset", "signal"), claim_ttl_s=2.0)
    yield "nb201-claimed"
    registry._ENTRIES.pop("nb201-claimed")


def test_an_architecture_another_run_is_measuring_is_awaited_not_remeasured(
        tmp_path: Path, tracking: str, calls: list[str], claiming_evaluator: str) -> None:
    import threading

    from prednas.pipeline.context import stage
    from prednas.spaces import arch_id
    from prednas.store import Triplet, open_store

    spec = small_spec(tmp_path, "n=3", "shards=1", f"evaluator.name={claiming_evaluator}", tracking_uri=tracking)
    preflight(spec)
    context, (shard,) = steps.sample(spec, run_key="waiting")
    st = stage(spec, "sample")
    store = open_store(spec.store_uri)
    busy, abandoned, _ = (st.space.from_dict(a) for a in steps.exchange.parse_shard(shard)[2])
    for arch in (busy, abandoned):  # another run holds both leases
        assert store.claim(spec.space, st.hash, arch_id(st.space, arch), "other-run", ttl_s=2.0)
    other = Triplet.create(st.space, busy, st.config, st.evaluator.evaluate(st.space, busy), stage="sample",
                           run_id="other-run")
    calls.clear()
    threading.Timer(0.5, store.put, args=(other,)).start()  # it finishes the first; the second's lease expires

    triplets, metrics = steps.evaluate(context, shard)
    assert triplets[0] == other and metrics["reused"] == 1 and metrics["evaluated"] == 2
    assert str(busy) not in calls and str(abandoned) in calls


def test_an_architecture_stored_and_released_just_before_the_claim_is_reused(
        tmp_path: Path, tracking: str, calls: list[str], claiming_evaluator: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from prednas.pipeline.context import stage
    from prednas.spaces import arch_id
    from prednas.store import Triplet, open_store

    spec = small_spec(tmp_path, "n=3", "shards=1", f"evaluator.name={claiming_evaluator}", tracking_uri=tracking)
    preflight(spec)
    context, (shard,) = steps.sample(spec, run_key="late-claim")
    st = stage(spec, "sample")
    store = open_store(spec.store_uri)
    first = st.space.from_dict(steps.exchange.parse_shard(shard)[2][0])
    other = Triplet.create(st.space, first, st.config, st.evaluator.evaluate(st.space, first), stage="sample",
                           run_id="other-run")
    original = type(store).claim

    def finished_meanwhile(self, space, config_hash, ident, owner, **kwargs):
        if ident == arch_id(st.space, first) and not self.get(space, config_hash, ident):
            self.put(other)  # the other run stores its trial and lets go of its lease right now
        return original(self, space, config_hash, ident, owner, **kwargs)

    monkeypatch.setattr(type(store), "claim", finished_meanwhile)
    calls.clear()
    triplets, metrics = steps.evaluate(context, shard)
    assert triplets[0] == other and metrics["reused"] == 1 and metrics["evaluated"] == 2
    assert str(first) not in calls and len(store.get(spec.space, st.hash, arch_id(st.space, first))) == 1
    assert store.claim(spec.space, st.hash, arch_id(st.space, first), "third-run", ttl_s=2.0)  # ours was let go
