"""Checks before spending: every stage's data checked without training, a dry run, empty configs, resume."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from pipeline_checks import SMALL, shared_tracking

from prednas.errors import PredNASError
from prednas.evaluators.nb201_table import NB201TableEvaluator
from prednas.pipeline.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "pipelines" / "configs"


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8), y_train=np.arange(8) % 2,
             x_test=rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), y_test=np.arange(4) % 2)
    return str(path)


def cli(*args: str, cwd: Path) -> Any:
    """Invoke ``prednas`` in this process."""
    from click.testing import CliRunner

    from prednas.cli import main

    with contextlib.chdir(cwd):
        return CliRunner().invoke(main, list(args))


def one_line_error(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output + result.stderr
    return lines[0]


def anynet(*overrides: str) -> Any:
    return load_config(CONFIGS / "anynet_cifar10.yaml", list(overrides))


def test_the_topk_stage_data_is_checked_before_any_run(tmp_path: Path, npz: str) -> None:
    """The issue's case: only evaluator.data.* set, the top-K stage's default path missing."""
    started = time.perf_counter()
    result = cli("run", "--config", str(CONFIGS / "anynet_cifar10.yaml"), "--root", "runs",
                 "--set", "evaluator.data.source=npz", "--set", f"evaluator.data.path={npz}", cwd=tmp_path)
    line = one_line_error(result)
    assert line.startswith("error: topk_evaluator.data.path: /data/cifar10 does not exist")
    assert line.endswith("(the top-k stage's evaluator)")
    assert not (tmp_path / "runs").exists(), "nothing is opened before the check"
    assert time.perf_counter() - started < 60


def test_a_cost_window_too_narrow_for_n_is_checked_before_any_run(tmp_path: Path) -> None:
    """Under cost.sample_in_window the N samples are drawn once, analytically, before anything is opened."""
    started = time.perf_counter()
    result = cli("run", "--root", "runs", "--set", "cost={metric: flops, target: 1.0e8, window: 1.0}", cwd=tmp_path)
    line = one_line_error(result)
    assert line.startswith("error: cost window flops 1e+08 +- 1 (cost.target, cost.window) is empty or too narrow")
    assert line.endswith("expected a wider cost.window, or cost.sample_in_window: false")
    assert not (tmp_path / "runs").exists(), "nothing is opened before the check"
    assert time.perf_counter() - started < 60


@pytest.mark.parametrize("command", [
    ["compile", "-o", "pipeline.yaml"],
    ["submit", "--host", "http://127.0.0.1:9"],
    ["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 0 3 * * *"],
], ids=lambda c: c[0])
def test_the_cluster_commands_refuse_a_window_too_narrow_before_anything(tmp_path: Path, command: list[str]) -> None:
    """The cluster's sample step would meet the same window: the command says so before writing or calling out."""
    result = cli(*command, "--set", "cost={metric: flops, target: 1.0e8, window: 1.0}", cwd=tmp_path)
    line = one_line_error(result)
    assert line.startswith("error: cost window flops 1e+08 +- 1 (cost.target, cost.window) is empty or too narrow")
    assert not (tmp_path / "pipeline.yaml").exists()


@pytest.mark.parametrize("command", [
    ["compile", "-o", "pipeline.yaml"],
    ["submit", "--host", "http://127.0.0.1:9"],
    ["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 0 3 * * *"],
], ids=lambda c: c[0])
def test_the_cluster_commands_refuse_a_bad_evaluator_option_before_anything(tmp_path: Path,
                                                                             command: list[str]) -> None:
    result = cli(*command, "--set", "evaluator.dataset=mnist", cwd=tmp_path)
    line = one_line_error(result)
    assert line.startswith("error: evaluator: unknown NB201 dataset 'mnist'")
    assert not (tmp_path / "pipeline.yaml").exists()


@pytest.mark.parametrize("config", ["anynet_cifar10.yaml", "anynet_imagefolder.yaml", "yolox_coco.yaml"])
def test_a_cluster_package_needs_no_data_on_this_machine(tmp_path: Path, config: str) -> None:
    """The evaluate steps read the data from their volume: compiling says what it left to the cluster, and writes."""
    result = cli("compile", "-o", "pipeline.yaml", "--config", str(CONFIGS / config), cwd=tmp_path)  # under /data
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stderr.startswith("note: cost window not checked here: the sample stage's data is not readable")
    assert (tmp_path / "pipeline.yaml").exists()


def test_a_cluster_package_checks_the_window_with_data_it_can_read(tmp_path: Path, npz: str) -> None:
    result = cli("compile", "-o", "pipeline.yaml", "--config", str(CONFIGS / "anynet_cifar10.yaml"),
                 "--set", "evaluator.data.source=npz", "--set", f"evaluator.data.path={npz}",
                 "--set", "evaluator.cost_input_size=32", "--set", "cost.window=1", cwd=tmp_path)
    assert one_line_error(result).startswith("error: cost window macs")
    assert not (tmp_path / "pipeline.yaml").exists()


def npz_without_labels(tmp_path: Path) -> str:
    path = tmp_path / "x.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4, 3), np.uint8))
    return str(path)


def folder(tmp_path: Path, *, classes: bool = True, images: bool = True, broken: bool = False) -> str:
    for split in ("train", "val"):
        (tmp_path / "f" / split).mkdir(parents=True)
        if classes:
            (tmp_path / "f" / split / "cat").mkdir()
            if images and broken:
                (tmp_path / "f" / split / "cat" / "a.png").write_bytes(b"not a png")
            elif images:
                Image.new("RGB", (4, 4)).save(tmp_path / "f" / split / "cat" / "a.png")
    return str(tmp_path / "f")


@pytest.mark.parametrize(("data", "message"), [
    (lambda t: {"source": "npz", "path": str(t / "none.npz")}, "none.npz does not exist; expected an .npz file"),
    (lambda t: {"source": "npz", "path": npz_without_labels(t)}, "lacks y_train, x_test, y_test"),
    (lambda t: {"source": "cifar100", "path": str(t)}, "lacks train; expected the extracted cifar100"),
    (lambda t: {"source": "imagefolder", "path": folder(t, classes=False)}, "has no class sub-folders"),
    (lambda t: {"source": "imagefolder", "path": folder(t, images=False)}, "has no images"),
    (lambda t: {"source": "imagefolder", "path": folder(t, broken=True)}, "is not a readable image"),
])
def test_classification_data_errors_name_the_stage_and_key(tmp_path: Path, npz: str, data: Any, message: str) -> None:
    bad = json.dumps(data(tmp_path))
    with pytest.raises(PredNASError) as info:
        anynet(f"evaluator.data={{source: npz, path: {npz}}}", f"topk_evaluator.data={bad}").check_evaluators()
    text = str(info.value)
    assert text.startswith("topk_evaluator.data.path: ") and message in text, text
    assert text.endswith("(the top-k stage's evaluator)")


def test_a_stage_without_its_own_evaluator_is_named_with_the_one_it_shares(tmp_path: Path) -> None:
    spec = anynet(f"evaluator.data={{source: npz, path: {tmp_path / 'no.npz'}}}", "topk_evaluator={}")
    with pytest.raises(PredNASError, match=r"^evaluator\.data\.path: .*\(the sample and top-k stages' evaluator\)$"):
        spec.check_evaluators()


@pytest.mark.parametrize(("config", "overrides", "message"), [
    ("anynet_cifar10.yaml", ["evaluator.cost_input_size=16"],
     "evaluator.cost_input_size: 16: expected an integer in 32..8192"),
    ("anynet_cifar10.yaml", ["topk_evaluator.recipe.resolution=16"],
     "topk_evaluator.recipe.resolution: 16 (with no cost_input_size, also the cost's input size): expected an "
     "integer in 32..8192"),
    ("yolox_coco.yaml", ["evaluator.cost_input_size=100"], "evaluator.cost_input_size: 100: expected a multiple of 32"),
])
def test_a_cost_input_size_the_space_refuses_is_named_before_any_data_is_read(
        config: str, overrides: list[str], message: str) -> None:
    spec = load_config(CONFIGS / config, overrides)
    with pytest.raises(PredNASError) as info:
        spec.check_evaluators(data=False)
    assert str(info.value).startswith(message), info.value


def test_images_under_the_cost_models_size_name_the_key_that_fixes_it(npz: str) -> None:
    """8 px images and no cost_input_size: the sample step names the key, not only the space's field."""
    from prednas.pipeline.context import stage

    spec = anynet(f"evaluator.data={{source: npz, path: {npz}}}", "topk_evaluator={}")
    spec.check_evaluators()  # the options are fine; only the loaded images show the size
    with pytest.raises(PredNASError, match=r"^evaluator\.cost_input_size: 8 \(unset: the images' own size, "
                                           r"from data\.path .*d\.npz\): expected an integer in 32\.\.8192.*"
                                           r"\(the sample stage's evaluator\)$"):
        stage(spec, "sample")
    trained_small = anynet(f"evaluator.data={{source: npz, path: {npz}}}", "evaluator.cost_input_size=32")
    assert stage(trained_small, "sample").space.input_size == 32
    with_resolution = anynet(f"evaluator.data={{source: npz, path: {npz}}}", "evaluator.recipe.resolution=32")
    assert stage(with_resolution, "sample").space.input_size == 32


def test_good_data_passes_for_every_stage(npz: str, tmp_path: Path) -> None:
    folders = folder(tmp_path)
    anynet(f"evaluator.data={{source: npz, path: {npz}}}", f"topk_evaluator.data={{source: imagefolder, "
           f"path: {folders}}}", "final_m=2", f"final_evaluator.data={{source: npz, path: {npz}}}",
           "final_evaluator.name=classification").check_evaluators()


def test_the_cifar_layout_is_torchvisions() -> None:
    from torchvision import datasets

    from prednas.train.data import CIFAR_FILES

    for name, cls in (("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)):
        base, files, meta, key = CIFAR_FILES[name]
        assert (base, meta, key) == (cls.base_folder, cls.meta["filename"], cls.meta["key"])
        assert list(files) == [f for f, _ in (*cls.train_list, *cls.test_list)]


def coco(tmp_path: Path, annotations: Any) -> dict[str, str]:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "1.jpg")
    (tmp_path / "train.json").write_text(json.dumps(annotations))
    return {"root": str(tmp_path), "train_annotations": "train.json", "train_images": "images",
            "val_annotations": "train.json"}


GOOD_COCO = {"images": [{"id": 1, "file_name": "1.jpg", "width": 8, "height": 8}],
             "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
             "categories": [{"id": 1, "name": "thing"}]}


@pytest.mark.parametrize(("annotations", "change", "key", "message"), [
    ({"images": [], "annotations": []}, {}, "data.train_annotations", "isn't COCO: expected a list under 'categories'"),
    ({**GOOD_COCO, "images": [{**GOOD_COCO["images"][0], "file_name": "2.jpg"}]}, {}, "data.train_images",
     "2.jpg does not exist"),
    (GOOD_COCO, {"val_images": "nowhere"}, "data.val_images", "image folder"),
])
def test_detection_data_errors_name_the_key(tmp_path: Path, annotations: Any, change: dict, key: str,
                                            message: str) -> None:
    data = {**coco(tmp_path, annotations), **change}
    spec = load_config(CONFIGS / "yolox_coco.yaml", [f"evaluator.data={json.dumps(data)}"])
    with pytest.raises(PredNASError) as info:
        spec.check_evaluators()
    assert str(info.value).startswith(f"evaluator.{key}: ") and message in str(info.value), str(info.value)


def test_good_coco_passes(tmp_path: Path) -> None:
    data = coco(tmp_path, GOOD_COCO)
    load_config(CONFIGS / "yolox_coco.yaml", [f"evaluator.data={json.dumps(data)}"]).check_evaluators()


def test_an_empty_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing here\n")
    line = one_line_error(cli("run", "--config", "empty.yaml", cwd=tmp_path))
    assert "config file empty.yaml is empty" in line


def test_dry_run_prints_the_config_and_the_dag_and_opens_nothing(tmp_path: Path) -> None:
    result = cli("run", "--dry-run", "--root", "runs", "--set", "k=5", "--set", "rounds=2", "--set", "final_m=2",
                 cwd=tmp_path)
    assert result.exit_code == 0, result.output + result.stderr
    spec = load_config(None, ["k=5", "rounds=2", "final_m=2", f"tracking_uri=sqlite:///{tmp_path / 'runs/mlflow.db'}",
                              f"store_uri={tmp_path / 'runs/store'}"])
    assert yaml.safe_load(result.output) == yaml.safe_load(yaml.safe_dump(spec.to_dict()))
    steps = [line.split(". ", 1)[1] for line in result.output.splitlines() if line.startswith("# ") and ". " in line]
    assert [s.split("  ")[0] for s in steps] == [
        "sample N (n=30)", "evaluate sample shards", "fit predictors (round 1/2)", "propose (round 1/2)",
        "evaluate round 1 shards", "fit predictors (round 2/2)", "propose (round 2/2)", "evaluate round 2 shards",
        "select best", "evaluate final shards", "select best by final result", "close MLflow run"]
    assert "37 architectures to measure" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_tracking(tmp_path_factory)


def test_resume_finds_the_failed_run_and_measures_nothing_again(tmp_path: Path, tracking: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[str] = []
    original = NB201TableEvaluator.evaluate
    fail_at = [8]  # n=6: the sample stage and one top-K architecture succeed, then a step fails

    def flaky(self, space, arch):  # the Evaluator protocol
        if len(measured) == fail_at[0]:
            raise PredNASError("the evaluator's node went away")
        result = original(self, space, arch)
        measured.append(str(arch))
        return result

    monkeypatch.setattr(NB201TableEvaluator, "evaluate", flaky)
    settings = [arg for item in [*SMALL, "rounds=2", "pretrain=0", f"tracking_uri={tracking}", "experiment=resume"]
                for arg in ("--set", item)]
    failed = cli("run", "--in-process", "--root", "runs", *settings, cwd=tmp_path)
    assert failed.exit_code == 2 and failed.stderr.strip().splitlines()[-1] == "error: the evaluator's node went away"
    assert len(measured) == 8
    key = next((tmp_path / "runs" / "logs").glob("*.yaml")).stem

    fail_at[0] = -1
    resumed = cli("run", "--in-process", "--root", "runs", "--resume", cwd=tmp_path)
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert len(measured) == len(set(measured)) == 6 + 4, "an architecture was measured twice"
    assert [p.stem for p in (tmp_path / "runs" / "logs").glob("*.yaml")] == [key]
    assert "queries this run          10" in resumed.output

    again = cli("run", "--in-process", "--root", "runs", "--resume", key, cwd=tmp_path)
    assert again.exit_code == 0 and len(measured) == 10, "a finished run resumed measures nothing"


def test_resume_of_an_unknown_key_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "runs" / "logs").mkdir(parents=True)
    (tmp_path / "runs" / "logs" / "local-1.yaml").write_text("space: nb201\n")
    line = one_line_error(cli("run", "--root", "runs", "--resume", "local-2", cwd=tmp_path))
    assert "run key 'local-2' is not a local run" in line and "local-1" in line
