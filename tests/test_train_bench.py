"""The proxy-training benchmarks on tiny settings: they run, report and refuse bad options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from prednas.bench.training import REGNETX_200MF, detection_overfit, resume, sample_archs, shard_concurrency
from prednas.spaces.anynet import AnyNetSpace, make_arch
from prednas.train.classification import ClassificationRecipe
from prednas.train.detection import DetectionRecipe
from prednas.train.runtime import Runtime

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny networks gain nothing from more, and a busy CI machine loses a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), y_test=np.arange(16) % 4)
    return str(path)


def test_regnetx_200mf_shape() -> None:
    arch = make_arch(**REGNETX_200MF)
    assert arch.group_widths == (8, 8, 8, 8)
    assert AnyNetSpace().cost(arch)["macs"] == pytest.approx(200e6, rel=0.05)  # RegNetX-200MF: 0.2 GF


def test_sampled_archs_respect_the_cap_and_the_seed() -> None:
    space = AnyNetSpace()
    archs = sample_archs(4, seed=3, max_macs=300e6)
    assert archs == sample_archs(4, seed=3, max_macs=300e6)
    for data in archs:
        arch = space.check_range(space.from_dict(data))
        assert space.cost(arch)["macs"] <= 300e6


@pytest.mark.slow
def test_resume_benchmark_kills_and_resumes(npz: str) -> None:
    recipe = ClassificationRecipe(epochs=3, batch_size=8, lr=0.05)
    report = resume(npz, recipe, kill_after=1)
    assert report["exit_code"] == -9  # SIGKILL
    assert report["resumed_from"] == 1 and report["same_history"]
    assert report["rerun_top1"] == report["straight_top1"]


@pytest.mark.skipif(not COCO.exists(), reason="needs ../shared/data/coco_mini")
def test_detection_overfit_reports_its_history() -> None:
    recipe = DetectionRecipe(epochs=2, batch_size=2, input_size=64, warmup_epochs=1, no_aug_epochs=0, mosaic=False,
                             eval_every=1)
    report = detection_overfit(str(COCO), recipe, Runtime(device="cpu"), images=2, target_ap50=2.0)
    assert report["reached_at_iteration"] is None and report["max_iterations"] == 2
    assert [h["epoch"] for h in report["history"]] == [1, 2] and "val_ap50" in report["best"]


def test_cli_refuses_bad_options() -> None:
    from prednas.cli import main

    result = CliRunner().invoke(main, ["bench", "resume", "--epochs", "2", "--kill-after", "2"])
    assert result.exit_code == 2 and "--kill-after must be in 1..1" in result.output
    result = CliRunner().invoke(main, ["bench", "classifier", "--data", "/nowhere.npz", "--epochs", "1"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_training_throughput_rows(npz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from prednas.bench.throughput import WORKLOADS, throughput

    monkeypatch.setitem(WORKLOADS, "yolox_tiny-64", {"kind": "detector", "preset": "yolox_tiny", "size": 64,
                                                     "batch": {"cpu": 2}})
    workloads = ("anynet-32", "yolox_tiny-64") if COCO.exists() else ("anynet-32",)
    report = throughput(npz, str(COCO), "cpu", workloads=workloads, iterations=2, repeats=1, batch_size=4)
    assert [(r["workload"], r["precision"]) for r in report["rows"]] == [(w, "fp32") for w in workloads]
    for row in report["rows"]:
        assert row["step_images_per_s"] > 0 and row["loop_images_per_s"] > 0
        assert row["compile"] is False and row["warmup_s"] > 0
        assert row["ratio"] == pytest.approx(row["loop_images_per_s"] / row["step_images_per_s"])


@pytest.mark.parametrize(("args", "message"), [
    (["--workloads", "resnet-50"], "unknown workload 'resnet-50'"),
    (["--precisions", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
    (["--iterations", "0", "--device", "cpu"], "iterations must be >= 1, got 0"),
])
def test_training_throughput_refuses_bad_options(args: list[str], message: str) -> None:
    from prednas.cli import main

    result = CliRunner().invoke(main, ["bench", "training-throughput", *args])
    assert result.exit_code == 2 and message in result.output


def test_a_shard_trained_concurrently_measures_what_it_measures_in_sequence(npz: str) -> None:
    report = shard_concurrency(npz, archs=3, concurrency=(1, 2), device="cpu", epochs=1, fraction=1.0, batch_size=8,
                               max_macs=100e6)
    assert [(r["concurrency"], r["workers"]) for r in report["rows"]] == [(1, 1), (2, 2)]
    sequential, concurrent = report["rows"]
    assert sequential["speedup"] == 1.0 and concurrent["speedup"] == pytest.approx(
        sequential["wall_s"] / concurrent["wall_s"])
    assert concurrent["top1"] == sequential["top1"] and concurrent["max_top1_diff"] == 0.0  # one thread each
    assert sequential["resumed"] == concurrent["resumed"] == 0  # a fresh checkpoint folder per level
    assert report["resolution"] == 32 and len(report["macs"]) == 3 and report["train_images"] == 40


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", "1,0"], "concurrency levels must be integers >= 1, got [1, 0]"),
    (["--concurrency", "1,two"], "--concurrency must be comma-separated integers, got '1,two'"),
    (["--archs", "0"], "archs must be >= 1, got 0"),
])
def test_shard_concurrency_refuses_bad_options(args: list[str], message: str) -> None:
    from prednas.cli import main

    result = CliRunner().invoke(main, ["bench", "shard-concurrency", "--device", "cpu", *args])
    assert result.exit_code == 2 and message in result.output
