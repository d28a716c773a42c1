"""Classification training: recipe, schedule, determinism, checkpoints and resume."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from prednas.errors import PredNASError
from prednas.train.checkpoint import MAGIC, Checkpointer, decode, encode, read_checkpoint
from prednas.train.classification import ClassificationRecipe, train_classifier
from prednas.train.data import DataSpec, load_classification_data
from prednas.train.engine import WarmupCosine, YoloxWarmCos
from prednas.train.runtime import Runtime, build_seeded


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny networks gain nothing from more, and a busy CI machine loses a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def tiny_net(classes: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    """64 train and 32 test 8x8 images whose class is a colour, with noise."""
    rng = np.random.default_rng(0)
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 4
        x = colours[y][:, None, None, :] + rng.normal(0, 40, (n, 8, 8, 3))
        return x.clip(0, 255).astype(np.uint8), y

    x_train, y_train = make(64)
    x_test, y_test = make(32)
    path = tmp_path_factory.mktemp("data") / "colours.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return load_classification_data(DataSpec("npz", str(path)))


RECIPE = ClassificationRecipe(epochs=3, batch_size=16, lr=0.05, warmup_epochs=1, label_smoothing=0.1, seed=7)


def test_recipe_validation_and_unknown_keys() -> None:
    with pytest.raises(PredNASError, match="epochs=0 is out of range"):
        ClassificationRecipe(epochs=0)
    with pytest.raises(PredNASError, match="warmup_epochs"):
        ClassificationRecipe(epochs=2, warmup_epochs=3)
    with pytest.raises(PredNASError, match="unknown classification recipe key 'lrr'"):
        ClassificationRecipe.from_dict({"lrr": 0.1})
    assert ClassificationRecipe.from_dict({"epochs": 2}).epochs == 2


def test_schedules() -> None:
    cosine = WarmupCosine(total=100, warmup=10, factor=0.1)
    assert cosine(0) == pytest.approx(0.1)
    assert cosine(10) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.1)))
    assert cosine(100) == pytest.approx(0.0)
    assert all(cosine(i) >= cosine(i + 1) for i in range(10, 100))
    yolox = YoloxWarmCos(total=100, warmup=10, flat=20, min_ratio=0.05)
    assert yolox(0) == 0.0 and yolox(5) == pytest.approx(0.25) and yolox(10) == pytest.approx(1.0)
    assert yolox(80) == pytest.approx(0.05) and yolox(99) == pytest.approx(0.05)
    assert yolox(45) == pytest.approx(0.05 + 0.95 * 0.5)


def test_training_learns_and_is_deterministic(data) -> None:
    first = build_seeded(tiny_net, 0)
    result = train_classifier(first, data, RECIPE)
    assert result.top1 > 50.0  # 4 colours: chance is 25 %
    assert result.epochs == 3 and result.resumed_from == 0 and result.images == 3 * 64
    assert result.images_per_s > 0 and len(result.history) == 3
    second = build_seeded(tiny_net, 0)
    again = train_classifier(second, data, RECIPE)
    assert again.top1 == result.top1
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                 strict=True))


class Interrupt(Exception):
    pass


def _stop_after(epoch: int):
    def hook(stats: dict) -> None:
        if stats["epoch"] == epoch:
            raise Interrupt

    return hook


def test_resume_matches_an_uninterrupted_run(data, tmp_path: Path) -> None:
    reference = build_seeded(tiny_net, 0)
    full = train_classifier(reference, data, RECIPE)
    checkpoints = Checkpointer("run", tmp_path)
    with pytest.raises(Interrupt):
        train_classifier(build_seeded(tiny_net, 0), data, RECIPE, checkpointer=checkpoints, on_epoch=_stop_after(1))
    assert checkpoints.load()[0] == 1
    resumed_model = build_seeded(tiny_net, 5)  # different initial weights: the checkpoint overrides them
    resumed = train_classifier(resumed_model, data, RECIPE, checkpointer=checkpoints)
    assert resumed.resumed_from == 1 and resumed.images == 2 * 64
    assert resumed.top1 == full.top1
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(),
                                                 resumed_model.state_dict().values(), strict=True))
    done = train_classifier(build_seeded(tiny_net, 0), data, RECIPE, checkpointer=checkpoints)
    assert done.resumed_from == 3 and done.images == 0 and done.top1 == full.top1
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind


def test_checkpoint_is_safe_to_load_and_mismatches_start_over(tmp_path: Path, caplog) -> None:
    state = {"model": {"w": torch.ones(2)}, "history": [{"loss": 1.0}], "rng": {"data": torch.Generator().get_state()}}
    payload = decode(encode("fp", 2, state), "memory")
    assert payload["epoch"] == 2 and torch.equal(payload["state"]["model"]["w"], torch.ones(2))
    path = tmp_path / "fp.pt"
    buffer = io.BytesIO()
    torch.save({"format": 1, "fingerprint": "fp", "epoch": 1, "state": {"f": Interrupt}}, buffer)
    path.write_bytes(MAGIC + hashlib.sha256(buffer.getvalue()).digest() + buffer.getvalue())
    with caplog.at_level(logging.WARNING, logger="prednas.train"):
        assert Checkpointer("fp", tmp_path).load() is None  # a pickled class is refused by weights_only
        path.write_bytes(encode("fp", 1, state)[:-10])
        assert Checkpointer("fp", tmp_path).load() is None  # truncated
        path.write_bytes(encode("other", 1, state))
        assert Checkpointer("fp", tmp_path).load() is None
    assert sum("starts over" in r.message for r in caplog.records) == 3
    path.write_bytes(encode("fp", 4, state))
    assert read_checkpoint(path)["epoch"] == 4


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes) -> str:
        self.objects[key] = data
        return key

    def get_bytes(self, key: str) -> bytes:
        return self.objects[key]


def test_resume_from_the_store_when_the_folder_is_gone(data, tmp_path: Path) -> None:
    store = MemoryStore()
    with pytest.raises(Interrupt):
        train_classifier(build_seeded(tiny_net, 0), data, RECIPE, on_epoch=_stop_after(2),
                         checkpointer=Checkpointer("fp", tmp_path / "a", store, key="artifacts/ck/fp.pt"))
    assert list(store.objects) == ["artifacts/ck/fp.pt"]
    resumed = train_classifier(build_seeded(tiny_net, 0), data, RECIPE,
                               checkpointer=Checkpointer("fp", tmp_path / "b", store, key="artifacts/ck/fp.pt"))
    assert resumed.resumed_from == 2


def test_checkpoints_in_the_project_store(data, tmp_path: Path) -> None:
    from prednas.store import open_store

    store = open_store(str(tmp_path / "store"))
    checkpoints = Checkpointer("fp", None, store, key="artifacts/checkpoints/fp.pt")
    assert checkpoints.load() is None
    train_classifier(build_seeded(tiny_net, 0), data, RECIPE, checkpointer=checkpoints)
    assert checkpoints.load()[0] == 3


def test_corrupt_images_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    (tmp_path / "train" / "a" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    data = load_classification_data(DataSpec("imagefolder", str(tmp_path)))
    recipe = ClassificationRecipe(epochs=2, batch_size=4, resolution=8, eval_batch_size=4)
    with caplog.at_level(logging.WARNING, logger="prednas.train"):
        result = train_classifier(build_seeded(lambda: tiny_net(2), 0), data, recipe)
    assert result.skipped == 2  # once per epoch
    assert sum("skipped 1 unreadable images" in r.message for r in caplog.records) == 2


def test_divergence_is_a_one_line_error(data) -> None:
    recipe = ClassificationRecipe(epochs=1, batch_size=16, lr=1e12, momentum=0.0)
    with pytest.raises(PredNASError, match="diverged"):
        train_classifier(build_seeded(tiny_net, 0), data, recipe)


def test_runtime_validation() -> None:
    with pytest.raises(PredNASError, match="unknown precision"):
        Runtime(precision="fp8")
    runtime = Runtime()
    cpu = torch.device("cpu")
    assert runtime.amp_dtype(cpu) is None and not runtime.use_channels_last(cpu)
    assert Runtime(precision="bf16").amp_dtype(cpu) == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(PredNASError, match="CUDA is not available"):
            Runtime(device="cuda").torch_device()


def test_zero_init_residual_starts_blocks_as_their_shortcut() -> None:
    from prednas.spaces.anynet import build, make_arch
    from prednas.train.classification import zero_init_residual

    model = build(make_arch([1, 2, 1, 1], [8, 8, 16, 16], [1.0] * 4, [1, 1, 2, 2]), 3)
    assert zero_init_residual(model) == 5
    finals = [block.f[-1][1].weight for stage in model.stages for block in stage]
    assert all(float(w.detach().abs().sum()) == 0.0 for w in finals)
