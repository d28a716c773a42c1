"""Classification data: sources, subsets, batches, augmentation and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prednas.errors import PredNASError
from prednas.train.data import (
    ArraySplit,
    DataSpec,
    balanced_subset,
    crop_flip,
    load_classification_data,
    make_batches,
)

MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_mini" / "cifar10_mini.npz"

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny networks gain nothing from more, and a busy CI machine loses a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def write_npz(path: Path, n_train: int = 40, n_test: int = 20, classes: int = 4, size: int = 8, **extra) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, size, size, 3), dtype=np.uint8),
              "y_train": np.arange(n_train) % classes, "x_test": rng.integers(0, 256, (n_test, size, size, 3),
                                                                              dtype=np.uint8),
              "y_test": np.arange(n_test) % classes, "classes": np.array([f"c{i}" for i in range(classes)])}
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def write_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size + 2 * i, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_balanced_subset_keeps_each_class_share_and_is_seeded() -> None:
    labels = np.repeat(np.arange(5), [100, 50, 10, 1, 40])
    keep = balanced_subset(labels, 0.1, seed=3)
    counts = np.bincount(labels[keep], minlength=5)
    assert counts.tolist() == [10, 5, 1, 1, 4]
    assert np.all(np.diff(keep) > 0)
    assert np.array_equal(keep, balanced_subset(labels, 0.1, seed=3))
    assert not np.array_equal(keep, balanced_subset(labels, 0.1, seed=4))
    assert np.array_equal(balanced_subset(labels, 1.0, seed=0), np.arange(len(labels)))


def test_npz_source_with_fraction(tmp_path: Path) -> None:
    file = write_npz(tmp_path / "d.npz")
    data = load_classification_data(DataSpec("npz", str(file), fraction=0.5))
    assert isinstance(data.train, ArraySplit)
    assert len(data.train) == 20 and len(data.val) == 20
    assert data.classes == ("c0", "c1", "c2", "c3")
    assert np.bincount(data.train.labels.numpy()).tolist() == [5, 5, 5, 5]
    assert all(0 < s < 1 for s in data.std)


@pytest.mark.skipif(not MINI.exists(), reason="needs ../shared/data/cifar10_mini")
def test_cifar10_mini_loads() -> None:
    data = load_classification_data(DataSpec("npz", str(MINI), fraction=0.1))
    assert data.num_classes == 10 and len(data.val) == 2000 and len(data.train) == 1000
    assert data.train.images.shape[1:] == (32, 32, 3)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"x_train": np.zeros((4, 8, 8), dtype=np.float32)}, "x_train has shape"),
    ({"y_test": np.full(20, 9)}, "labels span"),
])
def test_npz_bad_arrays_are_one_line_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    file = write_npz(tmp_path / "bad.npz", **kwargs)
    with pytest.raises(PredNASError, match=message):
        load_classification_data(DataSpec("npz", str(file)))


def test_npz_missing_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(PredNASError, match="lacks y_train, x_test, y_test"):
        load_classification_data(DataSpec("npz", str(tmp_path / "m.npz")))


@pytest.mark.parametrize("source", ["npz", "imagefolder"])
def test_missing_path(tmp_path: Path, source: str) -> None:
    with pytest.raises(PredNASError, match="does not exist"):
        load_classification_data(DataSpec(source, str(tmp_path / "nowhere")))


def test_cifar_offline_without_download_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PredNASError, match="set download: true"):
        load_classification_data(DataSpec("cifar10", str(tmp_path)))


@pytest.mark.parametrize(("field", "value"), [("source", "hdf5"), ("fraction", 0.0), ("fraction", 1.5)])
def test_spec_validation(field: str, value) -> None:
    args = {"source": "npz", "path": "x", field: value}
    with pytest.raises(PredNASError):
        DataSpec(**args)


def test_imagefolder_layout_and_errors(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "tree")
    data = load_classification_data(DataSpec("imagefolder", str(root)))
    assert data.classes == ("cat", "dog")
    assert len(data.train) == 6 and sorted(set(data.train.labels.tolist())) == [0, 1]
    (root / "train" / "empty").mkdir()
    with pytest.raises(PredNASError, match=r"class folder .*empty is empty"):
        load_classification_data(DataSpec("imagefolder", str(root)))
    (root / "train" / "empty").rmdir()
    (root / "val" / "bird").mkdir()
    Image.new("RGB", (4, 4)).save(root / "val" / "bird" / "0.png")
    with pytest.raises(PredNASError, match="absent from"):
        load_classification_data(DataSpec("imagefolder", str(root)))


def test_file_batches_convert_greyscale_and_skip_corrupt_files(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "tree")
    Image.new("L", (10, 10), color=128).save(root / "train" / "cat" / "grey.png")
    (root / "train" / "dog" / "broken.png").write_bytes(b"not an image")
    data = load_classification_data(DataSpec("imagefolder", str(root)))
    batches = make_batches(data.train, data, batch_size=4, train=True, resolution=8, augment=True,
                           generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    seen, skipped = 0, []
    for batch in batches:
        seen += len(batch.labels)
        skipped += batch.skipped
        assert batch.images.shape[1:] == (3, 8, 8) if len(batch.labels) else True
    assert seen + len(skipped) == 8  # 8 files, drop_last drops none of them
    assert [Path(p).name for p in skipped] == ["broken.png"]


def test_file_batches_do_not_depend_on_workers(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "tree", per_class=4)
    data = load_classification_data(DataSpec("imagefolder", str(root)))

    def run(workers: int) -> list[torch.Tensor]:
        batches = make_batches(data.train, data, batch_size=3, train=True, resolution=8, augment=True, workers=workers,
                               generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))
        return [b.images for b in batches]

    assert all(torch.equal(a, b) for a, b in zip(run(0), run(2), strict=True))


def test_array_batches_resize_augment_and_normalise(tmp_path: Path) -> None:
    data = load_classification_data(DataSpec("npz", str(write_npz(tmp_path / "d.npz"))))

    def epoch(seed: int) -> list[torch.Tensor]:
        batches = make_batches(data.train, data, batch_size=16, train=True, resolution=12, augment=True,
                               generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))
        assert len(batches) == 2  # 40 images, last partial batch dropped in training
        return [b.images for b in batches]

    first = epoch(0)
    assert first[0].shape == (16, 3, 12, 12)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(0), strict=True))
    assert not torch.equal(first[0], epoch(1)[0])
    val = make_batches(data.val, data, batch_size=16, train=False, resolution=8, augment=True,
                       generator=torch.Generator(), device=torch.device("cpu"))
    images = torch.cat([b.images for b in val])
    raw = data.val.images.permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    assert torch.allclose(images, (raw - mean) / std, atol=1e-5)  # evaluation: no augmentation


def test_crop_flip_moves_pixels_as_expected() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    outs = [crop_flip(x, 1, gen) for _ in range(20)]
    for out in outs:
        assert out.shape == x.shape
        nonzero = out[out != 0]
        assert set(nonzero.tolist()) <= set(range(16))
    assert any(torch.equal(o, x.flip(3)) for o in outs) or any(torch.equal(o, x) for o in outs)
