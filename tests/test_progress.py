"""Progress of long steps: a line per training epoch and per architecture, in the step's log and the live display."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_checks import shared_tracking, small_spec

from prednas.pipeline import steps
from prednas.pipeline.local import _LogTee
from prednas.pipeline.progress import arch_line, parse_arch, shard_prefix
from prednas.train.classification import ClassificationRecipe, train_classifier
from prednas.train.data import DataSpec, load_classification_data
from prednas.train.engine import epoch_line
from prednas.train.runtime import build_seeded


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (32, 8, 8, 3), dtype=np.uint8), y_train=np.arange(32) % 2,
             x_test=rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8), y_test=np.arange(8) % 2)
    return load_classification_data(DataSpec("npz", str(path)))


def test_training_logs_one_line_per_epoch(data, caplog: pytest.LogCaptureFixture) -> None:
    net = build_seeded(lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 3, 2)), 0)
    with caplog.at_level(logging.INFO, logger="prednas.train"):
        train_classifier(net, data, ClassificationRecipe(epochs=3, batch_size=8, zero_init_residual=False))
    lines = [r.getMessage() for r in caplog.records if r.name == "prednas.train"]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all(" loss " in line and " images/s ETA " in line for line in lines)
    assert "top-1" not in lines[0] and "top-1" in lines[-1] and lines[-1].endswith("ETA 0:00")


def test_epoch_line_shows_a_detectors_ap_and_the_eta() -> None:
    stats = {"epoch": 2, "loss": 3.5, "seconds": 2.0, "images": 500, "val_ap": 0.3141}
    assert epoch_line(stats, 10, 125.0) == "epoch 2/10 loss 3.5000 AP 31.4 250 images/s ETA 2:05"


def test_arch_lines_round_trip() -> None:
    line = arch_line(shard_prefix("top-k", 2, 0), 3, 8, "finished", "|c3~0|", 71.234, 12.34)
    assert line == "evaluate round 2 shard 1: arch 3/8 finished |c3~0| accuracy 71.23 in 12.3 s"
    event = parse_arch(f"    [KFP Executor 2026-12-05 02:29:33,762 INFO]: {line}")
    assert event is not None and event.key == ("round 2", 1, 3) and event.total == 8 and event.done
    assert not parse_arch(arch_line(shard_prefix("sample", 0, 1), 1, 2, "started", "x")).done
    assert parse_arch("Task 'evaluate' finished with status SUCCESS") is None


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_tracking(tmp_path_factory)


def test_evaluate_logs_each_architecture_started_finished_or_reused(tmp_path: Path, tracking: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    spec = small_spec(tmp_path, "shards=1", "n=3", tracking_uri=tracking)
    context, shards = steps.sample(spec, run_key="progress")
    with caplog.at_level(logging.INFO, logger="prednas.pipeline.steps"):
        steps.evaluate(context, shards[0])
        steps.evaluate(context, shards[0])  # a retried step reuses what it stored
    events = [parse_arch(r.getMessage()) for r in caplog.records]
    assert [(e.index, e.event) for e in events] == [(1, "started"), (1, "finished"), (2, "started"), (2, "finished"),
                                                    (3, "started"), (3, "finished"), (1, "reused"), (2, "reused"),
                                                    (3, "reused")]
    assert all(e.label == "sample" and e.shard == 1 and e.total == 3 for e in events)
    assert " accuracy " in caplog.records[1].getMessage() and caplog.records[1].getMessage().endswith(" s")


def test_the_log_tee_reports_tasks_and_architectures() -> None:
    tasks, archs, log = [], [], io.StringIO()
    tee = _LogTee(log, lambda name, status: tasks.append((name, status)), archs.append)
    done = arch_line(shard_prefix("sample", 0, 0), 1, 2, "finished", "|c3~0|", 70.0, 1.0)
    tee.write("02:29:24 - INFO - Executing task \x1b[96m'evaluate'\x1b[0m\n    [KFP Executor ...]: ")
    tee.write(f"{done}\n02:29:53 - INFO - Task 'evaluate' finished with status \x1b[92mSUCCESS\x1b[0m\n")
    assert tasks == [("evaluate", "RUNNING"), ("evaluate", "SUCCESS")]
    assert [(e.label, e.index, e.event) for e in archs] == [("sample", 1, "finished")]
    assert log.getvalue().count("\n") == 3


def test_live_display_names_running_steps_and_counts_architectures_once() -> None:
    from rich.console import Console

    from prednas.cli.run import _progress

    spec = small_spec(Path("/nonexistent"), "rounds=2")
    display = _progress(Console(file=io.StringIO()), spec)
    display.task("evaluate-2", "RUNNING")
    display.task("evaluate-2", "RUNNING")
    display.task("fit-predictors", "SUCCESS")
    assert display.bar.tasks[display.steps].description == "steps: evaluate round 1 shards"
    done = parse_arch(arch_line(shard_prefix("top-k", 1, 0), 1, 2, "finished", "x", 1.0, 1.0))
    for _ in range(2):  # a retried step logs its architectures again
        display.arch(done)
    archs = display.bar.tasks[display.archs]
    assert (archs.completed, archs.total) == (1, spec.n + spec.k)
    assert archs.description == "architectures measured"


def test_a_kfp_steps_lines_reach_its_stdout_once() -> None:
    """Components run in kfp's executor, which sends the root logger to stdout at INFO: prednas adds no handler."""
    code = ("from kfp.dsl import executor_main; executor_main._setup_logging()\n"
            "from prednas.pipeline import steps; from prednas.train import engine\n"
            "steps.log.info('arch line'); engine.log.info('epoch line')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.count("arch line") == 1 and out.stdout.count("epoch line") == 1, out.stdout + out.stderr
