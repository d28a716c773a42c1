"""COCO-format detection data: validated annotations, letterbox, flip and mosaic (YOLOX's recipe).

Annotations are read as JSON and checked before pycocotools indexes them, so that a file
that isn't COCO, an annotation whose category or image is unknown, or a box of negative
size is a one-line error naming the record; a missing ``area``, ``iscrowd`` or ``id`` (which
COCOeval needs) defaults to the box area, 0 and the record's position. Category ids map to contiguous labels in the
order of the sorted category ids (as YOLOX does). Training drops crowd boxes (as COCO and
YOLOX do) and boxes of zero width or height; images without boxes stay and teach the
background. Images are decoded with PIL and converted to RGB (greyscale included); a file
that is missing or unreadable is skipped with a counted warning.

Transforms, following YOLOX's ``TrainTransform`` and ``Mosaic``: the letterbox scales the
longer side to the input size, keeps the aspect ratio and pads right and bottom with grey
114; the flip mirrors the image and its boxes with probability ``flip_prob``. Mosaic
places four images around a random centre of the output canvas, each letterboxed and
scaled by a random factor in [0.4, 1]. Deviations from YOLOX: the mosaic is cut directly
at the input size instead of a 2x canvas followed by a random affine (no rotation or
shear), and there is no MixUp or HSV jitter. Pixels are fed as RGB in [0, 1].
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prednas.errors import PredNASError, SettingError

PAD_VALUE = 114


@dataclass(frozen=True)
class CocoSpec:
    """Where COCO-format data is and which part of it is used."""

    train_annotations: str
    train_images: str
    val_annotations: str
    val_images: str | None = None
    fraction: float = 1.0
    fraction_seed: int = 0
    max_train_images: int | None = None
    max_val_images: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < float(self.fraction) <= 1.0:
            raise PredNASError(f"data fraction {self.fraction!r} is out of range; expected 0 < fraction <= 1")
        for name in ("max_train_images", "max_val_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PredNASError(f"{name}={value} is out of range; expected >= 1 or null")

    def config(self) -> dict[str, Any]:
        """Everything that changes which images and boxes are used."""
        return {"train_annotations": str(self.train_annotations), "train_images": str(self.train_images),
                "val_annotations": str(self.val_annotations), "val_images": str(self.val_images or self.train_images),
                "fraction": float(self.fraction), "fraction_seed": self.fraction_seed,
                "max_train_images": self.max_train_images, "max_val_images": self.max_val_images}


@dataclass(frozen=True)
class ImageRecord:
    """One image: its file, size and non-crowd boxes (xyxy pixels) with contiguous labels."""

    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class CocoSplit:
    """The images of one split and the pycocotools index that scores detections on it."""

    records: tuple[ImageRecord, ...]
    coco: Any
    class_ids: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """Number of categories."""
        return len(self.class_ids)

    @property
    def image_ids(self) -> list[int]:
        """Ids of the images used."""
        return [r.image_id for r in self.records]


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise PredNASError(message)


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Load and validate a COCO instances file; any malformed record is a one-line error."""
    file = Path(path).expanduser()
    _need(file.is_file(), f"annotation file {file} does not exist; expected a COCO instances JSON")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PredNASError(f"annotation file {file} is not JSON ({exc})") from None
    _need(isinstance(data, dict), f"annotation file {file} isn't COCO: expected a JSON object at the top")
    for key in ("images", "annotations", "categories"):
        _need(isinstance(data.get(key), list), f"annotation file {file} isn't COCO: expected a list under {key!r}")
    for i, cat in enumerate(data["categories"]):
        _need(isinstance(cat, dict) and isinstance(cat.get("id"), int),
              f"{file}: category #{i} has no integer 'id'")
    for i, img in enumerate(data["images"]):
        ok = isinstance(img, dict) and all(isinstance(img.get(k), t) for k, t in
                                           (("id", int), ("file_name", str), ("width", int), ("height", int)))
        _need(ok, f"{file}: image #{i} lacks id, file_name, width or height")
    cats = {c["id"] for c in data["categories"]}
    images = {img["id"] for img in data["images"]}
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(ann, i, file, cats, images)
        ann.setdefault("id", i + 1)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    return data


def _check_annotation(ann: Any, i: int, file: Path, cats: set[int], images: set[int]) -> None:
    name = f"annotation {ann.get('id', f'#{i}') if isinstance(ann, dict) else f'#{i}'}"
    _need(isinstance(ann, dict) and all(k in ann for k in ("image_id", "category_id", "bbox")),
          f"{file}: {name} lacks image_id, category_id or bbox")
    span = f"ids {min(cats, default=0)}..{max(cats, default=0)}"
    _need(ann["category_id"] in cats, f"{file}: {name} has category_id {ann['category_id']!r}, which is not "
                                      f"among the {len(cats)} categories ({span})")
    _need(ann["image_id"] in images, f"{file}: {name} refers to image_id {ann['image_id']!r}, absent from 'images'")
    box = ann["bbox"]
    ok = isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) and math.isfinite(v) for v in box)
    _need(ok, f"{file}: {name} has bbox {box!r}; expected [x, y, width, height] of 4 finite numbers")
    _need(box[2] >= 0 and box[3] >= 0,
          f"{file}: {name} has a box of negative size {box!r}; expected width, height >= 0")


def coco_index(data: dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` built from an already loaded dict (quietly)."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise PredNASError("detection needs pycocotools; install prednas[detection]") from None
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _records(data: dict[str, Any], image_dir: Path, class_index: dict[int, int], ids: list[int]) -> list[ImageRecord]:
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images = {img["id"]: img for img in data["images"]}
    out = []
    for image_id in ids:
        img = images[image_id]
        boxes, labels = [], []
        for ann in by_image.get(image_id, []):
            x, y, w, h = ann["bbox"]
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(img["width"]), x + w), min(float(img["height"]), y + h)
            if ann.get("iscrowd", 0) or x2 <= x1 or y2 <= y1:
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(class_index[ann["category_id"]])
        out.append(ImageRecord(image_id, str(image_dir / img["file_name"]), img["width"], img["height"],
                               np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels, dtype=np.int64)))
    return out


def _chosen_ids(data: dict[str, Any], fraction: float, seed: int, limit: int | None) -> list[int]:
    ids = sorted(img["id"] for img in data["images"])
    if fraction < 1.0:
        keep = np.random.default_rng(seed).permutation(len(ids))[: max(1, round(fraction * len(ids)))]
        ids = sorted(ids[i] for i in keep)
    return ids[:limit] if limit is not None else ids


def load_coco_split(annotations: str | Path, images: str | Path, *, fraction: float = 1.0, seed: int = 0,
                    limit: int | None = None, class_ids: tuple[int, ...] | None = None) -> CocoSplit:
    """Validate one COCO split and index its images (a seeded ``fraction``, then the first ``limit``)."""
    image_dir = Path(images).expanduser()
    _need(image_dir.is_dir(), f"image folder {image_dir} does not exist")
    data = read_coco_json(annotations)
    own = tuple(sorted(c["id"] for c in data["categories"]))
    _need(bool(own), f"annotation file {annotations} has no categories")
    if class_ids is not None:
        extra = sorted(set(own) - set(class_ids))
        _need(not extra, f"{annotations} has categories absent from the training split: {extra[:5]}")
    class_ids = class_ids or own
    ids = _chosen_ids(data, fraction, seed, limit)
    _need(bool(ids), f"annotation file {annotations} lists no images")
    records = _records(data, image_dir, {c: i for i, c in enumerate(class_ids)}, ids)
    return CocoSplit(tuple(records), coco_index(data), class_ids)


def load_coco(spec: CocoSpec) -> tuple[CocoSplit, CocoSplit]:
    """Training and validation splits of a ``CocoSpec``, sharing one category mapping."""
    train = load_coco_split(spec.train_annotations, spec.train_images, fraction=spec.fraction,
                            seed=spec.fraction_seed, limit=spec.max_train_images)
    val = load_coco_split(spec.val_annotations, spec.val_images or spec.train_images, limit=spec.max_val_images,
                          class_ids=train.class_ids)
    return train, val


def check_coco(spec: CocoSpec) -> None:
    """Check ``spec`` without indexing it: each annotation file is COCO (``read_coco_json``), lists images
    and categories, and its first image is in its image folder. Raises ``SettingError`` naming the key."""
    val_images = ("val_images", spec.val_images) if spec.val_images else ("train_images", spec.train_images)
    for key, images in (("train_annotations", ("train_images", spec.train_images)),
                        ("val_annotations", val_images)):
        folder = Path(images[1]).expanduser()
        if not folder.is_dir():
            raise SettingError(f"data.{images[0]}", f"image folder {folder} does not exist; expected the images "
                                                   f"named in data.{key}")
        try:
            data = read_coco_json(getattr(spec, key))
        except PredNASError as exc:
            raise SettingError(f"data.{key}", str(exc)) from None
        if not data["images"] or not data["categories"]:
            raise SettingError(f"data.{key}", f"{getattr(spec, key)} lists no "
                                              f"{'images' if not data['images'] else 'categories'}; expected both")
        first = folder / data["images"][0]["file_name"]
        if not first.is_file():
            raise SettingError(f"data.{images[0]}", f"{first} does not exist; expected the first image of "
                                                   f"data.{key} in {folder}")


def read_image(path: str) -> np.ndarray | None:
    """RGB uint8 ``H x W x 3`` pixels, or None when the file is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as raw:
            return np.asarray(raw.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (bilinear), at least one pixel each way."""
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def letterbox(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale the longer side to ``size``, pad right/bottom with grey; boxes follow. Returns the scale too."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    small = resize(image, scale)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    return canvas, boxes * scale, scale


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an image and its xyxy boxes left to right."""
    w = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0], flipped[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return image[:, ::-1], flipped


def mosaic(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four ``(image, boxes, labels)`` tiled around a random centre of a ``size`` canvas."""
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    xc, yc = (int(rng.uniform(0.25 * size, 0.75 * size)) for _ in range(2))
    all_boxes, all_labels = [], []
    for k, (image, boxes, labels) in enumerate(parts):
        h0, w0 = image.shape[:2]
        scale = size / max(h0, w0) * rng.uniform(0.4, 1.0)
        image, boxes = resize(image, scale), boxes * scale
        h, w = image.shape[:2]
        right, bottom = k in (1, 3), k in (2, 3)
        x1, x2 = (xc, min(size, xc + w)) if right else (max(0, xc - w), xc)
        y1, y2 = (yc, min(size, yc + h)) if bottom else (max(0, yc - h), yc)
        sx = 0 if right else w - (x2 - x1)
        sy = 0 if bottom else h - (y2 - y1)
        canvas[y1:y2, x1:x2] = image[sy:sy + (y2 - y1), sx:sx + (x2 - x1)]
        moved = boxes + np.array([x1 - sx, y1 - sy, x1 - sx, y1 - sy], dtype=np.float32)
        moved[:, 0::2] = moved[:, 0::2].clip(x1, x2)
        moved[:, 1::2] = moved[:, 1::2].clip(y1, y2)
        keep = ((moved[:, 2] - moved[:, 0]) >= 2) & ((moved[:, 3] - moved[:, 1]) >= 2)
        all_boxes.append(moved[keep])
        all_labels.append(labels[keep])
    return canvas, np.concatenate(all_boxes).reshape(-1, 4), np.concatenate(all_labels)


class DetectionDataset(torch.utils.data.Dataset):
    """Training samples keyed by ``(index, seed)`` or ``(index, seed, mosaic)``: letterboxed or mosaic images.

    A key without the flag follows ``self.mosaic``; the training loader puts it in the key,
    because its persistent workers hold their own copies of the dataset.
    """

    def __init__(self, split: CocoSplit, size: int, flip_prob: float = 0.5) -> None:
        self.records, self.size, self.flip_prob = split.records, size, flip_prob
        self.mosaic = False

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        record = self.records[index]
        image = read_image(record.path)
        if image is None:
            return None
        boxes = record.boxes.copy()
        if rng.random() < self.flip_prob:
            image, boxes = hflip(image, boxes)
        return image, boxes, record.labels

    def __getitem__(self, key: tuple[int, int] | tuple[int, int, bool]) -> tuple[Any, Any]:
        index, seed = key[0], key[1]
        use_mosaic = key[2] if len(key) > 2 else self.mosaic
        rng = np.random.default_rng(seed)
        first = self._load(index, rng)
        if first is None:
            return None, self.records[index].path
        if use_mosaic:
            others = [self._load(int(i), rng) for i in rng.integers(0, len(self.records), 3)]
            parts = [first] + [p for p in others if p is not None]
            parts += [first] * (4 - len(parts))
            image, boxes, labels = mosaic(parts, self.size, rng)
        else:
            image, boxes, _ = letterbox(first[0], first[1], self.size)
            labels = first[2]
        target = np.concatenate([labels[:, None].astype(np.float32), boxes], axis=1).reshape(-1, 5)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), torch.from_numpy(target)


def collate_detection(items: list[tuple[Any, Any]]) -> tuple[torch.Tensor | None, list[torch.Tensor], list[str]]:
    """Stack images, keep per-image targets ``(label, x1, y1, x2, y2)``, list unreadable files."""
    good = [(x, t) for x, t in items if x is not None]
    skipped = [t for x, t in items if x is None]
    if not good:
        return None, [], skipped
    return torch.stack([x for x, _ in good]), [t for _, t in good], skipped


class EvalImages(torch.utils.data.Dataset):
    """Letterboxed validation images with their record index and scale."""

    def __init__(self, split: CocoSplit, size: int) -> None:
        self.records, self.size = split.records, size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image = read_image(self.records[index].path)
        if image is None:
            return None, self.records[index].path
        canvas, _, scale = letterbox(image, np.zeros((0, 4), dtype=np.float32), self.size)
        return torch.from_numpy(canvas).permute(2, 0, 1), (index, scale)
