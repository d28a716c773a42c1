"""Runs you can tell apart and compare in MLflow: names, run-key and seed tags, the chosen architecture on
the parent, plots at the artifact root, and KILLED after Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pipeline_checks import SMALL, shared_tracking, small_spec

from prednas.pipeline import steps
from prednas.pipeline.inprocess import run_inprocess
from prednas.tracking import runs
from prednas.tracking.naming import child_name, search_name

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_tracking(tmp_path_factory)


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _parent(uri: str, experiment: str, key: str) -> Any:
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([exp], f"tags.`{runs.TAG_RUN_KEY}` = '{key}' and tags.`{runs.TAG_KIND}` = 'search'")
    return run


@pytest.fixture(scope="module")
def two_searches(tmp_path_factory: pytest.TempPathFactory, tracking: str) -> tuple[Any, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("searches")
    spec = small_spec(root, "rounds=1", tracking_uri=tracking)
    reports = [run_inprocess(spec, run_key=key) for key in ("search-one", "search-two")]
    return spec, reports


def test_children_carry_the_run_key_the_seed_and_a_readable_name(two_searches, tracking: str) -> None:
    spec, reports = two_searches
    client = _client(tracking)
    for report in reports:
        parent = client.get_run(report["parent_run_id"])
        assert parent.info.run_name == search_name("nb201", spec.evaluator, spec.seed, report["run_key"])
        assert parent.data.tags[runs.TAG_SEED] == "0"
        children = client.search_runs([parent.info.experiment_id], runs.children_filter(parent.info.run_id))
        assert len(children) == spec.n + spec.k
        for child in children:
            assert child.data.tags[runs.TAG_RUN_KEY] == report["run_key"]
            assert child.data.tags[runs.TAG_SEED] == "0"
            assert child.info.run_name.startswith("|") and child.info.run_name.endswith("|")  # NB201's string
    keys = {c.data.tags[runs.TAG_RUN_KEY] for c in client.search_runs(
        [client.get_experiment_by_name(spec.experiment).experiment_id], f"tags.`{runs.TAG_KIND}` = 'evaluation'")}
    assert keys == {"search-one", "search-two"}  # "Group by" prednas.run_key separates the two searches


def test_the_parent_names_the_chosen_architecture_and_its_child(two_searches, tracking: str) -> None:
    _, reports = two_searches
    client = _client(tracking)
    for report in reports:
        tags = client.get_run(report["parent_run_id"]).data.tags
        assert tags[runs.TAG_BEST_ARCH] == report["best"]["arch"]["arch"]
        child = client.get_run(tags[runs.TAG_BEST_CHILD])
        assert child.data.tags[runs.TAG_ARCH_ID] == tags[runs.TAG_BEST_ARCH_ID]
        assert child.data.metrics["accuracy"] == pytest.approx(report["best"]["accuracy"])


def test_the_plots_sit_at_the_artifact_root_too(two_searches, tracking: str) -> None:
    _, reports = two_searches
    client = _client(tracking)
    root = {a.path for a in client.list_artifacts(reports[0]["parent_run_id"]) if a.path.endswith(".png")}
    plots = {Path(a.path).name for a in client.list_artifacts(reports[0]["parent_run_id"], "plots")}
    assert root and root == plots  # the compare view lists common artifacts at the root only


def test_size_space_children_are_named_by_their_size() -> None:
    from types import SimpleNamespace

    arch = {"depths": [1, 1, 4, 7], "widths": [24, 56, 152, 368], "bottleneck": 1, "groups": 8}
    triplet = SimpleNamespace(arch=arch, cost={"macs": 4.1e6, "params": 1e5})
    assert runs.child_run_name(triplet) == child_name(arch, {"macs": 4.1e6}) == "d1.1.4.7 w24.56.152.368 4.1MMACs"


def test_an_interrupted_in_process_search_ends_killed(tmp_path: Path, tracking: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spec = small_spec(tmp_path, tracking_uri=tracking)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "fit_predictors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_inprocess(spec, run_key="interrupted")
    assert _parent(tracking, spec.experiment, "interrupted").info.status == "KILLED"


def test_sigterm_becomes_an_interrupt_and_reaches_the_children() -> None:
    from prednas.pipeline.interrupt import Terminated, sigterm_as_interrupt

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(Terminated), sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize(("interrupt", "code"), [("ctrl-c", 130), ("sigterm", 143)])
def test_an_interrupted_prednas_run_exits_128_plus_the_signal(tmp_path: Path, tracking: str, interrupt: str, code: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's convention: 130 after Ctrl-C (SIGINT), 143 after SIGTERM; the parent run ends KILLED either way."""
    from click.testing import CliRunner

    from prednas.cli import main

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        if interrupt == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "fit_predictors", interrupted)
    settings = [arg for item in [*SMALL, f"tracking_uri={tracking}", f"store_uri={tmp_path / 'store'}",
                                 f"experiment=exit-{interrupt}"] for arg in ("--set", item)]
    result = CliRunner().invoke(main, ["run", "--in-process", "--root", str(tmp_path / "runs"), *settings])
    assert result.exit_code == code, result.output + result.stderr
    assert result.stderr.strip().splitlines()[-1] == "aborted"
    client = _client(tracking)
    exp = client.get_experiment_by_name(f"exit-{interrupt}").experiment_id
    (parent,) = client.search_runs([exp], f"tags.`{runs.TAG_KIND}` = 'search'")
    assert parent.info.status == "KILLED"


@pytest.mark.slow
def test_sigterm_during_prednas_run_ends_the_parent_killed(tmp_path: Path) -> None:
    """`prednas run` (kfp.local) killed while its steps run leaves the parent run KILLED, not RUNNING."""
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    command = [str(Path(sys.executable).with_name("prednas")), "run", "--root", str(tmp_path / "runs"),
               "--set", "predictor.epochs=3000", "--set", "predictor.cv_folds=2", "--n", "6", "--k", "4",
               "--experiment", "killed"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not _fit_started(tmp_path / "runs"):
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        process.kill()
    client = _client(uri)
    exp = client.get_experiment_by_name("killed").experiment_id
    (parent,) = client.search_runs([exp], f"tags.`{runs.TAG_KIND}` = 'search'")
    assert parent.info.status == "KILLED"


def _fit_started(root: Path) -> bool:
    """Whether the local run reached its first fit step (the parent run exists and the samples are measured)."""
    logs = list((root / "logs").glob("*.log")) if (root / "logs").exists() else []
    return any("fit-predictors" in log.read_text(errors="replace") for log in logs)


def test_the_run_key_finds_the_parent_not_a_child(two_searches, tracking: str) -> None:
    """Children carry the run key too, and a warm start's children start before their parent."""
    from prednas.tracking import Tracker

    spec, reports = two_searches
    tracker = Tracker(tracking, spec.experiment)
    for report in reports:
        assert tracker.find_parent(report["run_key"]) == report["parent_run_id"]
        assert _client(tracking).get_run(report["parent_run_id"]).info.status == "FINISHED"
