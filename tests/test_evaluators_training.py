"""The training evaluators through the registry: config, evaluation, checkpoints, bad options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluation, Evaluator, config_hash
from prednas.evaluators.registry import evaluator_entry, make_evaluator
from prednas.spaces import get_space
from prednas.spaces.anynet import make_arch
from prednas.train.checkpoint import decode

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"
TINY_ANYNET = make_arch([1, 1, 1, 1], [8, 8, 16, 16], [1.0] * 4, [1, 1, 2, 2])

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
    np.savez(path, x_train=rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), y_train=np.arange(32) % 3,
             x_test=rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8), y_test=np.arange(12) % 3)
    return str(path)


def classification_config(npz: str, **recipe) -> dict:
    return {"name": "classification", "data": {"source": "npz", "path": npz},
            "recipe": {"epochs": 2, "batch_size": 8, **recipe}, "device": "cpu"}


@pytest.mark.parametrize("name", ["classification", "detection"])
def test_registered_as_training_evaluators(name: str) -> None:
    entry = evaluator_entry(name)
    assert entry.trains and entry.claim_ttl_s > 0
    assert entry.spaces == ({"classification": "anynet", "detection": "yolox"}[name],)


def test_classification_evaluation_and_reuse_of_its_checkpoint(npz: str, tmp_path: Path) -> None:
    evaluator = make_evaluator(classification_config(npz))
    assert isinstance(evaluator, Evaluator)
    evaluator.attach(checkpoint_dir=tmp_path)
    space = get_space("anynet")
    first = evaluator.evaluate(space, TINY_ANYNET)
    assert isinstance(first, Evaluation) and 0 <= first.accuracy <= 100
    assert set(first.cost) == {"macs", "flops", "params", "latency_ms"} and first.cost["latency_ms"] > 0
    assert first.cost["macs"] == space.cost(TINY_ANYNET)["macs"]
    assert {"top5", "wall_s", "images_per_s", "epoch_s", "resumed_from"} <= set(first.report)
    again = make_evaluator(classification_config(npz)).attach(checkpoint_dir=tmp_path).evaluate(space, TINY_ANYNET)
    assert again.accuracy == first.accuracy and again.report["resumed_from"] == 2.0
    files = list(tmp_path.rglob("*.pt"))
    assert len(files) == 1 and files[0].parent.name == config_hash(evaluator.config())


def test_config_holds_what_changes_the_numbers(npz: str) -> None:
    base = make_evaluator(classification_config(npz)).config()
    assert config_hash(base) == config_hash(make_evaluator(classification_config(npz)).config())
    for change in ({"epochs": 3}, {"lr": 0.2}, {"resolution": 40}, {"seed": 1}):
        assert config_hash(make_evaluator(classification_config(npz, **change)).config()) != config_hash(base)
    fraction = classification_config(npz)
    fraction["data"]["fraction"] = 0.5
    assert config_hash(make_evaluator(fraction).config()) != config_hash(base)
    on_gpu = classification_config(npz)
    on_gpu["device"] = "cuda"  # what a pipeline step given an accelerator sets: the triplet key must not change
    assert config_hash(make_evaluator(on_gpu).config()) == config_hash(base)


@pytest.mark.slow
def test_a_compiled_run_checkpoints_plain_weights_under_its_own_config(npz: str, tmp_path: Path) -> None:
    space = get_space("anynet")
    eager = make_evaluator(classification_config(npz, epochs=1)).evaluate(space, TINY_ANYNET)
    evaluator = make_evaluator({**classification_config(npz, epochs=1), "compile": True})
    assert evaluator.config()["compile"] is True
    assert "compile" not in make_evaluator(classification_config(npz)).config()  # the hashes of eager runs stay
    compiled = evaluator.attach(checkpoint_dir=tmp_path).evaluate(space, TINY_ANYNET)
    assert compiled.report["train_loss"] == pytest.approx(eager.report["train_loss"], rel=1e-3)
    (checkpoint,) = tmp_path.rglob("*.pt")
    assert checkpoint.parent.name == config_hash(evaluator.config()) != config_hash(make_evaluator(
        classification_config(npz, epochs=1)).config())
    weights = decode(checkpoint.read_bytes(), str(checkpoint))["state"]["model"]
    assert weights and not any(key.startswith("_orig_mod") for key in weights)  # the module's own names


def test_compile_without_a_compiler_is_refused_before_training(npz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(PredNASError, match="compile=true needs a C\\+\\+ compiler on PATH"):
        make_evaluator({**classification_config(npz), "compile": True})


def test_a_step_given_an_accelerator_trains_on_cuda_only_where_cuda_is(npz: str, caplog) -> None:
    from prednas.pipeline.context import build_evaluator

    config = {k: v for k, v in classification_config(npz).items() if k != "device"}
    assert build_evaluator(config, "nvidia.com/gpu", cuda=True).runtime.device == "cuda"
    with caplog.at_level("WARNING"):
        assert build_evaluator(config, "nvidia.com/gpu", cuda=False).runtime.device == "auto"
    assert "requested nvidia.com/gpu but CUDA is not available" in caplog.text
    assert build_evaluator(config, "").runtime.device == "auto"
    pinned = {**config, "device": "cuda"}  # the config's own device wins, so a missing GPU stays an error
    assert build_evaluator(pinned, "nvidia.com/gpu", cuda=False).runtime.device == "cuda"


def test_space_has_the_data_classes_and_the_training_resolution(npz: str) -> None:
    space = make_evaluator(classification_config(npz, resolution=32)).space
    assert space.name == "anynet" and space.num_classes == 3 and space.input_size == 32
    config = classification_config(npz, resolution=32)
    config["cost_input_size"] = 224
    assert make_evaluator(config).space.input_size == 224


@pytest.mark.parametrize(("config", "message"), [
    ({"name": "classification", "data": {"source": "npz", "path": "x"}, "epochs": 3}, "unknown option 'epochs'"),
    ({"name": "classification", "data": {"source": "npz", "path": "x"}, "recipe": {"epoch": 3}},
     "unknown classification recipe key 'epoch'"),
    ({"name": "classification", "data": {"path": "x"}}, "'source' and 'path'"),
    ({"name": "classification", "data": {"source": "npz", "path": "x"}, "signal": "top3"}, "signal"),
    ({"name": "classification", "data": {"source": "npz", "path": "x"}, "compile": "yes"},
     "compile='yes' is not a boolean; expected true or false"),
    ({"name": "detection", "data": {"train_images": "x"}, "compile": True}, "unknown option 'compile'"),
    ({"name": "detection", "data": {"train_images": "x"}}, "lacks 'train_annotations'"),
    ({"name": "detection", "data": {"root": "r", "train_annotations": "a", "train_images": "i",
                                    "val_annotations": "v"}, "recipe": {"input_size": 33}}, "multiple of 32"),
])
def test_bad_options_are_one_line_errors(config: dict, message: str) -> None:
    with pytest.raises(PredNASError, match=message):
        make_evaluator(config)


def test_missing_data_is_reported_on_first_use(tmp_path: Path) -> None:
    evaluator = make_evaluator({"name": "classification", "data": {"source": "npz", "path": str(tmp_path / "x")}})
    with pytest.raises(PredNASError, match="does not exist"):
        evaluator.evaluate(get_space("anynet"), TINY_ANYNET)


@pytest.mark.skipif(not COCO.exists(), reason="needs ../shared/data/coco_mini")
def test_detection_evaluation() -> None:
    from prednas.spaces.yolox import make

    arch = make(8, ([1] * 4, [8, 16, 24, 32], [0.5] * 4), ([1] * 4, [16, 8, 16, 32], [0.5] * 4), [([8], [8], [8])] * 3)
    evaluator = make_evaluator({
        "name": "detection", "device": "cpu",
        "data": {"root": str(COCO), "train_annotations": "annotations/instances_train.json", "train_images": "images",
                 "val_annotations": "annotations/instances_val.json", "max_train_images": 4, "max_val_images": 2},
        "recipe": {"epochs": 1, "batch_size": 2, "input_size": 64, "warmup_epochs": 0, "no_aug_epochs": 0},
    })
    space = get_space("yolox")
    result = evaluator.evaluate(space, arch)
    assert 0 <= result.accuracy <= 100 and result.cost["flops"] == space.cost(arch)["flops"]
    assert {"ap50", "ap75", "ap_small", "iterations_per_s", "images_per_s"} <= set(result.report)
    assert evaluator.config()["data"]["train_images"] == str(COCO / "images")


@pytest.mark.parametrize("name", ["anynet_cifar10", "anynet_imagefolder", "yolox_coco"])
def test_config_examples_load_and_build_their_evaluators(name: str) -> None:
    from prednas.pipeline.config import load_config

    spec = load_config(Path(__file__).resolve().parents[1] / "pipelines" / "configs" / f"{name}.yaml")
    assert spec.trains and spec.accelerator() == "nvidia.com/gpu"

    def nulls(value) -> bool:  # KFP cannot pass None inside a struct parameter
        if isinstance(value, dict):
            return any(nulls(v) for v in value.values())
        return value is None

    for config in spec.stage_evaluators.values():
        assert not nulls(config)
        evaluator = make_evaluator(config)
        assert evaluator.name == {"anynet": "classification", "yolox": "detection"}[spec.space]
        assert config_hash(evaluator.config())
