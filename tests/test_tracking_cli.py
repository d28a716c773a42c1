"""Runs you can tell apart: run names, ``prednas runs`` and ``prednas ui``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from prednas.cli import main
from prednas.tracking import naming

ANYNET = {"depths": [1, 1, 4, 7], "widths": [24, 56, 152, 368], "ratios": [1.0, 1.0, 1.0, 1.0],
          "groups": [1, 1, 1, 1]}
YOLOX = {"stem": 32, "backbone": {"depths": [1, 3, 3, 1], "widths": [64, 128, 256, 512]},
         "neck": {"depths": [1, 1, 1, 1], "widths": [128, 256, 128, 256]}, "heads": []}


@pytest.mark.parametrize(("evaluator", "label"), [
    ({"name": "nb201-table", "dataset": "cifar100"}, "cifar100"),
    ({"name": "classification", "data": {"source": "imagefolder", "path": "/data/ImageNet/"}}, "imagenet"),
    ({"name": "classification", "data": {"source": "npz", "path": "../shared/cifar10_mini.npz"}}, "cifar10_mini"),
    ({"name": "classification", "data": {"source": "cifar10", "path": "/x"}}, "cifar10"),
    ({"name": "detection", "data": {"root": "/data/coco_mini", "train_annotations": "annotations/a.json"}},
     "coco_mini"),
])
def test_search_name_carries_space_dataset_seed_and_a_short_id(evaluator, label):
    name = naming.search_name("nb201", evaluator, 3, "local-20261204-abc")
    assert name == f"nb201-{label}-s3-{naming.short_id('local-20261204-abc')}"
    assert len(naming.short_id("x")) == 4 and naming.short_id("a") != naming.short_id("b")


def test_child_names_are_readable():
    nb201 = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert naming.child_name({"arch": nb201}) == nb201
    assert naming.child_name({"channels": [8, 16, 24, 32, 64]}) == "8:16:24:32:64"
    assert naming.child_name(ANYNET, {"macs": 4.1e6}) == "d1.1.4.7 w24.56.152.368 4.1MMACs"
    assert naming.child_name(YOLOX, {"macs": 1.33e10}) == "stem32 bb d1.3.3.1 w64.128.256.512 neck d1.1.1.1 13.3GMACs"


@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    """A local root with two finished searches and one running."""
    from prednas.tracking import Tracker

    root = tmp_path_factory.mktemp("runs")
    tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}", "prednas")
    for i, (space, best) in enumerate((("nb201", 73.4), ("anynet", 21.65), ("nb201", None))):
        key = f"local-{i}"
        parent = tracker.start_parent(naming.search_name(space, {"dataset": "cifar100"}, i, key), {"space": space},
                                      {"prednas.space": space}, key=key)
        if best is not None:
            tracker.log_final(parent, {"best_accuracy": best, "queries": 70})
            tracker.close(parent, "FINISHED")
    return root


def test_runs_lists_past_searches_newest_first(searches):
    result = CliRunner().invoke(main, ["runs", "--root", str(searches)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:5] == ["name", "space", "best", "queries", "status"]
    assert [line.split()[0] for line in lines[1:]] == [f"nb201-cifar100-s2-{naming.short_id('local-2')}",
                                                        f"anynet-cifar100-s1-{naming.short_id('local-1')}",
                                                        f"nb201-cifar100-s0-{naming.short_id('local-0')}"]
    assert "21.65" in lines[2] and "70" in lines[2] and "FINISHED" in lines[2] and "RUNNING" in lines[1]
    assert max(len(line) for line in lines) <= 100


def test_runs_without_a_store_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["runs", "--root", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("error: no local runs at")


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_ui_refuses_an_invalid_port(searches, port):
    result = CliRunner().invoke(main, ["ui", "--root", str(searches), "--port", port])
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1


def test_ui_refuses_a_busy_port(searches):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["ui", "--root", str(searches), "--port", str(port)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot serve the MLflow UI on 127.0.0.1:{port}:")


def _ctrl_c_reaches() -> None:
    """SIGINT as a terminal delivers it (a job started in the background by a shell inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ui_serves_the_runs_view_in_machine_learning_mode(searches):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "prednas.cli", "ui", "--root", str(searches), "--port", str(port)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, preexec_fn=_ctrl_c_reaches)
    try:
        line = ui.stdout.readline()
        assert line.startswith(f"MLflow UI: http://127.0.0.1:{port}/#/experiments/"), line
        assert "/runs?workflowType=machine_learning" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=60) == 0


def test_version():
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output == f"prednas {version('prednas')}\n"



def test_a_moved_root_keeps_its_artifacts(tmp_path):
    import shutil

    from mlflow import MlflowClient

    from prednas.tracking import Tracker

    old = tmp_path / "old"
    tracker = Tracker(f"sqlite:///{old / 'mlflow.db'}", "prednas")
    parent = tracker.start_parent("nb201-cifar100-s0-abcd", {}, {}, key="local-moved")
    (tmp_path / "report.json").write_text("{}")
    tracker.client.log_artifact(parent, str(tmp_path / "report.json"), "final")
    tracker.close(parent)
    new = tmp_path / "new"
    shutil.move(old, new)
    result = CliRunner().invoke(main, ["runs", "--root", str(new)])
    assert result.exit_code == 0, result.output
    client = MlflowClient(f"sqlite:///{new / 'mlflow.db'}")
    run = client.get_run(parent)
    assert run.info.artifact_uri.startswith((new / "mlartifacts").as_uri() + "/")
    assert client.get_experiment(run.info.experiment_id).artifact_location == (new / "mlartifacts").as_uri()
    assert Path(client.download_artifacts(parent, "final/report.json", str(tmp_path))).read_text() == "{}"
