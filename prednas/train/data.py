"""Classification data for proxy training: ImageFolder trees, CIFAR-10/100 and NumPy arrays.

Sources (``DataSpec.source``):

- ``imagefolder``: ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` (the ImageNet layout of
  torchvision's ``ImageFolder``). Images are decoded with PIL in DataLoader workers;
  training uses RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) and a horizontal flip,
  evaluation a resize of the short side to ``resolution / crop_ratio`` and a centre crop,
  as pycls trains RegNet. Greyscale and palette images are converted to RGB. A file that
  PIL cannot decode is skipped and counted (``Batch.skipped``), never fatal.
- ``cifar10`` / ``cifar100``: torchvision's datasets under ``PATH``, downloaded only when
  ``download`` is set.
- ``npz``: ``x_train``/``y_train``/``x_test``/``y_test`` (uint8 ``N x H x W x 3``, integer
  labels) and optionally ``classes``, the format of ``cifar10_mini``.

In-memory sources are kept as one uint8 tensor on the training device and cut, resized and
augmented there in whole batches (random crop with ``resolution // 8`` zero padding and a
flip, the CIFAR recipe of He et al. 2016), which is several times faster than per-image
PIL transforms on small images. Every random draw comes from one ``torch.Generator``
owned by the trainer (for files: a per-sample seed handed out with the index), so results
depend on the seed only, not on the number of workers.

``fraction`` keeps a seeded, class-balanced subset of the training split (the paper's cheap
proxies); the validation split is always used whole.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prednas.errors import PredNASError, SettingError

SOURCES: tuple[str, ...] = ("npz", "imagefolder", "cifar10", "cifar100")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DataSpec:
    """Where the classification data is and which part of it trains."""

    source: str
    path: str
    download: bool = False
    fraction: float = 1.0
    fraction_seed: int = 0
    train_split: str = "train"
    val_split: str = "val"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise PredNASError(f"unknown data source {self.source!r}; expected one of: {', '.join(SOURCES)}")
        if not 0.0 < float(self.fraction) <= 1.0:
            raise PredNASError(f"data fraction {self.fraction!r} is out of range; expected 0 < fraction <= 1")

    def config(self) -> dict[str, Any]:
        """The fields that change what is trained on (``download`` does not)."""
        out = {"source": self.source, "path": str(self.path), "fraction": float(self.fraction),
               "fraction_seed": self.fraction_seed}
        if self.source == "imagefolder":
            out |= {"train_split": self.train_split, "val_split": self.val_split}
        return out


@dataclass(frozen=True)
class ArraySplit:
    """Images held in memory: uint8 ``N x H x W x 3`` and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FileSplit:
    """Images as files: ``(path, label)`` pairs."""

    samples: tuple[tuple[str, int], ...]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        """Labels as an array."""
        return np.array([label for _, label in self.samples], dtype=np.int64)


@dataclass(frozen=True)
class ClassificationData:
    """A training and a validation split with their classes and normalisation."""

    train: ArraySplit | FileSplit
    val: ArraySplit | FileSplit
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


@dataclass
class Batch:
    """One batch on the device, normalised, and the files skipped while making it."""

    images: torch.Tensor
    labels: torch.Tensor
    skipped: list[str]


def balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset holding ``fraction`` of every class (at least one each)."""
    if fraction >= 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.append(rng.permutation(idx)[: max(1, round(fraction * len(idx)))])
    return np.sort(np.concatenate(keep))


def load_classification_data(spec: DataSpec) -> ClassificationData:
    """Load (or index) both splits of a data source and apply the training fraction."""
    root = Path(spec.path).expanduser()
    if spec.source in ("cifar10", "cifar100"):
        data = _load_cifar(spec.source, root, spec.download)
    elif not root.exists():
        raise PredNASError(f"data path {root} does not exist; expected a {spec.source} "
                           f"{'file' if spec.source == 'npz' else 'folder'}")
    elif spec.source == "npz":
        data = _load_npz(root)
    else:
        data = _load_folder(root, spec.train_split, spec.val_split)
    keep = balanced_subset(data.train.labels.numpy() if isinstance(data.train, ArraySplit) else data.train.labels,
                           spec.fraction, spec.fraction_seed)
    if len(keep) < len(data.train):
        train = data.train
        if isinstance(train, ArraySplit):
            index = torch.from_numpy(keep)
            train = ArraySplit(train.images[index], train.labels[index])
        else:
            train = FileSplit(tuple(train.samples[i] for i in keep))
        data = ClassificationData(train, data.val, data.classes, data.mean, data.std)
    return data


def check_classification_data(spec: DataSpec) -> None:
    """Check ``spec`` without loading it whole: the path exists and its first records parse.

    npz: the file opens and holds the four arrays; cifar10/100: torchvision's batch files
    are there and the label names load (unless ``download`` is set); imagefolder: both
    splits have class sub-folders and the first image of the first class decodes. Raises
    ``SettingError`` naming the key (``data.path``).
    """
    root = Path(spec.path).expanduser()
    if spec.source in ("cifar10", "cifar100"):
        if not spec.download:
            _check_cifar(spec.source, root)
    elif not root.exists():
        kind = "an .npz file" if spec.source == "npz" else "a folder with train/ and val/ class folders"
        raise SettingError("data.path", f"{root} does not exist; expected {kind}")
    elif spec.source == "npz":
        _check_npz(root)
    else:
        for split in (spec.train_split, spec.val_split):
            _check_class_folder(root / split)


def _check_npz(file: Path) -> None:
    try:
        with np.load(file, allow_pickle=False) as arrays:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays.files]
            labels = None if missing else arrays["y_test"]
    except (OSError, ValueError) as exc:
        raise SettingError("data.path", f"{file} is not a readable .npz file ({exc})") from None
    if missing:
        raise SettingError("data.path", f"{file} lacks {', '.join(missing)}; expected x_train, y_train, x_test, y_test")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise SettingError("data.path", f"{file}: y_test has shape {labels.shape} and dtype {labels.dtype}; "
                                        f"expected integer labels")


# torchvision's layout of the extracted archives: folder, files, label-names file and key
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"), "batches.meta",
                "label_names"),
    "cifar100": ("cifar-100-python", ("train", "test"), "meta", "fine_label_names"),
}


class _PlainUnpickler(pickle.Unpickler):
    """Reads pickles of plain data only (dicts, lists, strings, numbers): no class or function resolves."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused {module}.{name}: only plain data is read")


def _check_cifar(name: str, root: Path) -> None:
    base, files, meta_file, key = CIFAR_FILES[name]
    folder = root / base
    if not root.is_dir():
        raise SettingError("data.path", f"{root} does not exist; expected a folder holding {base} "
                                        f"(or download: true on a machine that is online)")
    missing = [f for f in (*files, meta_file) if not (folder / f).is_file()]
    if missing:
        raise SettingError("data.path", f"{folder} lacks {missing[0]}; expected the extracted {name} "
                                        f"(or download: true on a machine that is online)")
    try:
        with open(folder / meta_file, "rb") as file:
            meta = _PlainUnpickler(file, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise SettingError("data.path", f"{folder / meta_file} is unreadable ({exc})") from None
    if not isinstance(meta, dict) or key not in meta:
        raise SettingError("data.path", f"{folder / meta_file} has no {key!r}; expected {name}'s label names")


def _check_class_folder(folder: Path) -> None:
    """Class sub-folders exist and the first image of the first class decodes."""
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise SettingError("data.path", f"{folder} does not exist; expected one sub-folder per class")
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise SettingError("data.path", f"{folder} has no class sub-folders; expected {folder}/<class>/<image>")
    first = next((p for p in sorted(classes[0].rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS), None)
    if first is None:
        raise SettingError("data.path", f"class folder {classes[0]} has no images; expected files ending in "
                                        f"{', '.join(IMAGE_EXTENSIONS)}")
    try:
        with Image.open(first) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise SettingError("data.path", f"{first} is not a readable image ({exc})") from None


def _array_split(x: np.ndarray, y: np.ndarray, name: str, file: Path) -> ArraySplit:
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise PredNASError(f"{file}: x_{name} has shape {x.shape} and dtype {x.dtype}; expected uint8 N x H x W x 3")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise PredNASError(f"{file}: y_{name} has shape {y.shape} and dtype {y.dtype}; "
                           f"expected {len(x)} integer labels")
    if len(x) == 0:
        raise PredNASError(f"{file}: the {name} split is empty; expected at least one image")
    return ArraySplit(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))


def _load_npz(file: Path) -> ClassificationData:
    try:
        arrays = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PredNASError(f"{file} is not a readable .npz file ({exc})") from None
    with arrays:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays.files]
        if missing:
            raise PredNASError(f"{file} lacks {', '.join(missing)}; expected x_train, y_train, x_test, y_test")
        train = _array_split(arrays["x_train"], arrays["y_train"], "train", file)
        val = _array_split(arrays["x_test"], arrays["y_test"], "test", file)
        top = int(max(train.labels.max(), val.labels.max())) + 1
        classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays.files else tuple(map(str, range(top)))
    low = int(min(train.labels.min(), val.labels.min()))
    if low < 0 or top > len(classes):
        raise PredNASError(f"{file}: labels span {low}..{top - 1}; expected 0..{len(classes) - 1} "
                           f"for {len(classes)} classes")
    return _with_stats(train, val, classes)


def _with_stats(train: ArraySplit, val: ArraySplit, classes: tuple[str, ...]) -> ClassificationData:
    """Normalise with the training split's own per-channel mean and std."""
    pixels = train.images.reshape(-1, 3).double() / 255.0
    mean = tuple(float(v) for v in pixels.mean(0))
    std = tuple(float(v) for v in pixels.std(0).clamp_min(1e-3))
    return ClassificationData(train, val, classes, mean, std)  # type: ignore[arg-type]


def _load_cifar(name: str, root: Path, download: bool) -> ClassificationData:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train, val = (cls(str(root), train=flag, download=download) for flag in (True, False))
    except RuntimeError:
        raise PredNASError(f"{name} not found under {root}; set download: true on a machine that is online, "
                           f"or point path at an extracted copy") from None
    except OSError as exc:
        raise PredNASError(f"cannot download {name} into {root} ({exc})") from None
    splits = [ArraySplit(torch.from_numpy(d.data), torch.tensor(d.targets, dtype=torch.int64)) for d in (train, val)]
    return _with_stats(splits[0], splits[1], tuple(train.classes))


def _scan_class_folders(folder: Path) -> dict[str, list[str]]:
    if not folder.is_dir():
        raise PredNASError(f"image folder {folder} does not exist; expected one sub-folder per class")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise PredNASError(f"image folder {folder} has no class sub-folders; expected {folder}/<class>/<image>")
    files = {}
    for name in classes:
        found = sorted(str(p) for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise PredNASError(f"class folder {folder / name} is empty; expected images with one of the "
                               f"extensions {', '.join(IMAGE_EXTENSIONS)}")
        files[name] = found
    return files


def _load_folder(root: Path, train_split: str, val_split: str) -> ClassificationData:
    train = _scan_class_folders(root / train_split)
    val = _scan_class_folders(root / val_split)
    classes = tuple(train)
    unknown = sorted(set(val) - set(classes))
    if unknown:
        raise PredNASError(f"{root / val_split} has classes absent from {root / train_split}: {', '.join(unknown[:5])}")
    index = {name: i for i, name in enumerate(classes)}
    splits = [FileSplit(tuple((f, index[c]) for c in sorted(tree) for f in tree[c])) for tree in (train, val)]
    return ClassificationData(splits[0], splits[1], classes, IMAGENET_MEAN, IMAGENET_STD)


class ArrayBatches:
    """Batches cut from an in-memory split, resized and augmented on the device."""

    def __init__(self, split: ArraySplit, data: ClassificationData, *, batch_size: int, train: bool,
                 resolution: int, augment: bool, generator: torch.Generator, device: torch.device) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size, self.train, self.resolution = batch_size, train, resolution
        self.augment, self.generator, self.device = augment and train, generator, device
        self.mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
        self.drop_last = train and len(split) > batch_size

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size].to(self.device)
            x = self.images[idx].permute(0, 3, 1, 2).float().div_(255.0)
            if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
                x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                                  align_corners=False, antialias=True)
            if self.augment:
                x = crop_flip(x, max(1, self.resolution // 8), self.generator)
            yield Batch((x - self.mean) / self.std, self.labels[idx], [])


def crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop of a zero-padded batch back to its size, and a random horizontal flip, per image."""
    b, _, h, w = x.shape
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = oy[:, None] + torch.arange(h)
    cols = ox[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    out = padded[torch.arange(b, device=dev)[:, None, None], :, rows.to(dev)[:, :, None], cols.to(dev)[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def make_batches(split: ArraySplit | FileSplit, data: ClassificationData, *, batch_size: int, train: bool,
                 resolution: int, augment: bool, generator: torch.Generator, device: torch.device,
                 workers: int = 0, crop_ratio: float = 0.875) -> ArrayBatches | Any:
    """An iterable of ``Batch`` over one split, for training (shuffled, augmented) or evaluation."""
    if isinstance(split, ArraySplit):
        return ArrayBatches(split, data, batch_size=batch_size, train=train, resolution=resolution,
                            augment=augment, generator=generator, device=device)
    from prednas.train.folder import FileBatches

    return FileBatches(split, data, batch_size=batch_size, train=train, resolution=resolution, augment=augment,
                       generator=generator, device=device, workers=workers, crop_ratio=crop_ratio)
