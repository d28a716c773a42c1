"""Batches of image files for classification (ImageFolder trees), decoded with PIL in workers.

Training: RandomResizedCrop (area 8-100 %, aspect 3/4-4/3, ten tries then a centre crop,
as torchvision draws it) and a horizontal flip; evaluation: the short side resized to
``resolution / crop_ratio`` and a centre crop. The random draws of each sample come from a
seed the sampler hands out with its index (drawn from the trainer's generator), so a run
depends on the seed alone, whatever the number of workers. A file PIL cannot read is
returned as a skip marker, dropped by the collate function and reported in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from prednas.train.data import Batch, ClassificationData, FileSplit


def resized_crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a RandomResizedCrop window drawn with ``rng``."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    side = min(width, height)
    return (height - side) // 2, (width - side) // 2, side, side


class FileDataset(torch.utils.data.Dataset):
    """Decodes one sample per ``(index, seed)`` key; unreadable files become ``(None, path)``."""

    def __init__(self, split: FileSplit, *, train: bool, resolution: int, crop_ratio: float, augment: bool) -> None:
        self.samples = split.samples
        self.train, self.resolution, self.crop_ratio, self.augment = train, resolution, crop_ratio, augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, Any]:
        from PIL import Image, UnidentifiedImageError

        index, seed = key
        path, label = self.samples[index]
        try:
            with Image.open(path) as raw:
                image = raw.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None, path
        return self._transform(image, np.random.default_rng(seed)), label

    def _transform(self, image: Any, rng: np.random.Generator) -> torch.Tensor:
        from torchvision.transforms import functional as TF

        size = [self.resolution, self.resolution]
        if self.train and self.augment:
            top, left, h, w = resized_crop_box(image.width, image.height, rng)
            image = TF.resized_crop(image, top, left, h, w, size, antialias=True)
            if rng.random() < 0.5:
                image = TF.hflip(image)
        else:
            image = TF.resize(image, round(self.resolution / self.crop_ratio), antialias=True)
            image = TF.center_crop(image, size)
        return TF.pil_to_tensor(image)


def collate(items: list[tuple[Any, Any]]) -> tuple[torch.Tensor | None, torch.Tensor, list[str]]:
    """Stack readable samples; list the paths of unreadable ones."""
    good = [(x, y) for x, y in items if x is not None]
    skipped = [y for x, y in items if x is None]
    if not good:
        return None, torch.empty(0, dtype=torch.int64), skipped
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), skipped


class FileBatches:
    """Batches of decoded files from a DataLoader, normalised on the device."""

    def __init__(self, split: FileSplit, data: ClassificationData, *, batch_size: int, train: bool,
                 resolution: int, augment: bool, generator: torch.Generator, device: torch.device,
                 workers: int = 0, crop_ratio: float = 0.875) -> None:
        self.dataset = FileDataset(split, train=train, resolution=resolution, crop_ratio=crop_ratio, augment=augment)
        self.batch_size, self.train, self.generator, self.device, self.workers = (
            batch_size, train, generator, device, workers)
        self.mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(data.std, device=device).view(1, 3, 1, 1) * 255.0
        self.drop_last = train and len(split) > batch_size

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        seeds = torch.randint(0, 2**62, (n,), generator=self.generator) if self.train else torch.zeros(n, dtype=int)
        keys = list(zip(order.tolist(), seeds.tolist(), strict=True))
        sampler = torch.utils.data.BatchSampler(keys, self.batch_size, self.drop_last)
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.workers,
                                             collate_fn=collate, pin_memory=self.device.type == "cuda")
        for images, labels, skipped in loader:
            if images is None:
                yield Batch(torch.empty(0, 3, 1, 1, device=self.device), labels.to(self.device), skipped)
                continue
            x = images.to(self.device, non_blocking=True).float()
            yield Batch((x - self.mean) / self.std, labels.to(self.device, non_blocking=True), skipped)
