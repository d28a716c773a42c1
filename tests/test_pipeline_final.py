"""The optional final stage: the best ``final_m`` by the search signal retrained with ``final_evaluator``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pipeline_checks import shared_tracking, small_spec

from prednas.errors import PredNASError
from prednas.pipeline import exchange
from prednas.pipeline import report as reporting
from prednas.pipeline.config import SearchSpec, load_config
from prednas.pipeline.context import SearchContext, stage
from prednas.pipeline.state import SearchState
from prednas.pipelines.prednas_pipeline import COMPILED
from prednas.store.triplet import Triplet

TEST_SIGNAL = "final_evaluator={name: nb201-table, dataset: cifar100, signal: test}"


@pytest.mark.parametrize(("override", "message"), [
    ("final_m=-1", r"final_m must be an integer in \[0, 1000\], got -1"),
    ("final_m=1001", r"final_m must be an integer in \[0, 1000\], got 1001"),
    ("final_m=11", r"final_m must be an integer in \[0, 10\] \(at most n \+ k\), got 11"),
    ("final_m=three", r"final_m must be an integer in \[0, 1000\], got 'three'"),
    ("final_m=true", r"final_m must be an integer in \[0, 1000\], got True"),
    ("final_evaluator=fast", r"final_evaluator must be a mapping, got 'fast'"),
    ("final_evaluator={name: nope}", r"unknown evaluator 'nope'"),
])
def test_bad_final_stage_values_are_one_line_errors(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(PredNASError, match=message) as info:
        small_spec(tmp_path, override)
    assert "\n" not in str(info.value)


def test_final_stage_evaluator_defaults_to_the_top_k_one_and_is_a_run_time_parameter(tmp_path: Path) -> None:
    assert "final" not in small_spec(tmp_path).stage_evaluators
    topk = {"name": "nb201-table", "dataset": "cifar100", "signal": "test"}
    spec = small_spec(tmp_path, "final_m=3", f"topk_evaluator={json.dumps(topk)}")
    assert spec.stage_evaluators["final"] == topk
    spec = small_spec(tmp_path, "final_m=3")
    assert spec.stage_evaluators["final"] == spec.evaluator
    # the same recipe as the top-K stage, still stored apart: a retrain is not a lookup of that result
    assert stage(spec, "final").hash != stage(spec, "top-k").hash
    floated = {**spec.to_arguments(), "final_m": 3.0}
    assert SearchSpec.from_arguments(floated) == spec
    assert load_config().to_arguments()["final_m"] == 0


def _triplets(spec: SearchSpec, name: str, archs: list[Any], run_id: str) -> list[Triplet]:
    st = stage(spec, name)
    return [Triplet.create(st.space, a, st.config, st.evaluator.evaluate(st.space, a), stage=name, run_id=run_id)
            for a in archs]


def test_finalists_are_the_best_m_distinct_by_signal(tmp_path: Path) -> None:
    spec = small_spec(tmp_path, "final_m=4")
    space = stage(spec, "sample").space
    archs = [space.sample(np.random.default_rng(i)) for i in range(8)]
    training = _triplets(spec, "sample", archs[:6], "run")
    topk = _triplets(spec, "top-k", archs[5:], "run")  # archs[5] measured by both stages: one finalist
    context = SearchContext(spec, "key", "run", 0.0)
    chosen, shards = reporting.plan_final(context, SearchState(training), topk)
    ranked = sorted(exchange.unique_by_key([*training, *topk]), key=lambda t: (-t.accuracy, t.created_at))
    distinct = list(dict.fromkeys(space.equivalence_key(space.from_dict(t.arch)) for t in ranked))
    assert [space.equivalence_key(space.from_dict(t.arch)) for t in chosen] == distinct[:4]
    planned = [a for s in shards for a in exchange.parse_shard(s)[2]]
    assert {exchange.parse_shard(s)[0] for s in shards} == {"final"} and len(planned) == 4
    assert sorted(json.dumps(a, sort_keys=True) for a in planned) == sorted(json.dumps(t.arch, sort_keys=True)
                                                                           for t in chosen)
    assert reporting.plan_final(SearchContext(small_spec(tmp_path), "key", "run", 0.0), SearchState(training),
                                topk) == ([], [])


def test_with_a_top_k_recipe_the_top_k_rank_first(tmp_path: Path) -> None:
    spec = small_spec(tmp_path, "final_m=5", "topk_evaluator={name: nb201-table, dataset: cifar100, signal: test}")
    space = stage(spec, "sample").space
    archs = [space.sample(np.random.default_rng(i)) for i in range(8)]
    training, topk = _triplets(spec, "sample", archs[:5], "run"), _triplets(spec, "top-k", archs[5:], "run")
    chosen, _ = reporting.plan_final(SearchContext(spec, "key", "run", 0.0), SearchState(training), topk)
    assert [t.stage for t in chosen] == ["top-k"] * 3 + ["sample"] * 2
    assert [t.accuracy for t in chosen[:3]] == sorted((t.accuracy for t in topk), reverse=True)


def test_the_compiled_pipeline_holds_the_final_stage_branch() -> None:
    spec, *_ = yaml.safe_load_all(COMPILED.read_text())
    dags = {"root": spec["root"], **spec["components"]}
    tasks = {name: task for d in dags.values() for name, task in d.get("dag", {}).get("tasks", {}).items()}
    branches = [t for t in tasks.values() if "final_m" in t.get("triggerPolicy", {}).get("condition", "")]
    assert len(branches) == 1 and "> 0" in branches[0]["triggerPolicy"]["condition"]
    inside = spec["components"][branches[0]["componentRef"]["name"]]["dag"]["tasks"]
    assert {t["componentRef"]["name"] for t in inside.values()} >= {"comp-select-final"}
    assert any("parameterIterator" in t for t in inside.values())
    assert spec["root"]["inputDefinitions"]["parameters"]["final_m"]["defaultValue"] == 0


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the module's runs (each in its own experiment)."""
    return shared_tracking(tmp_path_factory)


def _store_trials(spec: SearchSpec, name: str) -> list[Triplet]:
    return exchange.RunRef(spec.store_uri, spec.tracking_uri, spec.experiment).store().list(
        spec.space, stage(spec, name).hash)


@pytest.mark.slow
def test_final_stage_through_kfp_local_then_a_rerun_measures_nothing(tmp_path: Path, tracking: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from prednas.pipeline.inprocess import run_inprocess
    from prednas.pipeline.local import run_local

    spec = small_spec(tmp_path, "final_m=3", TEST_SIGNAL, tracking_uri=tracking)
    report = run_local(spec, root=tmp_path / "runs", run_key="final-stage").report
    final = _store_trials(spec, "final")
    assert len(final) == spec.final_m and len({t.arch_id for t in final}) == spec.final_m
    space = stage(spec, "sample").space
    measured = sorted(_store_trials(spec, "sample"), key=lambda t: (-t.accuracy, t.created_at))  # both stages
    best_m = list(dict.fromkeys(space.equivalence_key(space.from_dict(t.arch)) for t in measured))[:spec.final_m]
    assert {space.equivalence_key(space.from_dict(t.arch)) for t in final} == set(best_m)

    top = max(final, key=lambda t: t.accuracy)
    assert report["best"]["stage"] == "final" and report["best"]["trial"] == top.trial
    assert report["topk_best"]["stage"] in ("sample", "top-k") and report["evaluator"]["signal"] == "test"
    assert [row["accuracy"] for row in report["final_table"]] == sorted((t.accuracy for t in final), reverse=True)
    _check_tracking(spec, report)
    _check_printed(report, capsys)

    again = run_inprocess(spec, run_key="final-stage")  # the same run again, in one process
    assert Counter(t.arch_id for t in _store_trials(spec, "final")) == Counter(t.arch_id for t in final)
    assert len(_store_trials(spec, "sample")) == spec.n + spec.k  # nothing measured twice
    assert [row["trial"] for row in again["final_table"]] == [row["trial"] for row in report["final_table"]]
    assert again["best"] == report["best"] and again["topk_best"] == report["topk_best"]


def _check_printed(report: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """``prednas run`` prints the final best and keeps the top-K stage's choice in view."""
    from prednas.cli.run import print_report

    capsys.readouterr()
    print_report(report, 1.0)
    out = capsys.readouterr().out
    assert f"final-stage measurements  {len(report['final_table'])}" in out
    assert f"({report['topk_best']['accuracy']:.2f})" in out.split("top-K stage's choice", 1)[1].splitlines()[0]


def _check_tracking(spec: SearchSpec, report: dict[str, Any]) -> None:
    """One child per evaluation of each stage; best_* name the final result, topk_best_* the top-K choice."""
    from mlflow import MlflowClient

    client = MlflowClient(spec.tracking_uri)
    parent = client.get_run(report["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=1000)
    assert Counter(c.data.tags["prednas.stage"] for c in children) == {"sample": spec.n, "top-k": spec.k,
                                                                        "final": spec.final_m}
    metrics = parent.data.metrics
    assert metrics["best_accuracy"] == report["best"]["accuracy"]
    assert metrics["topk_best_accuracy"] == report["topk_best"]["accuracy"]
    assert metrics["final_queries"] == spec.final_m and "final_kendall_tau" in metrics
    logged = client.download_artifacts(parent.info.run_id, "final/report.json", str(Path(spec.store_uri).parent))
    assert json.loads(Path(logged).read_text())["best"] == report["best"]
