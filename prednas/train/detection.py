"""Proxy training of a YOLOX-space detector and its COCO evaluation (paper Sec. IV-C).

The paper trains each sampled detector "following [YOLOX], but using 6% train data". The
recipe here is YOLOX's ``Exp`` defaults: SGD (Nesterov momentum 0.9, weight decay 5e-4 on
conv weights only), learning rate ``0.01 / 64`` per image in the batch, ``yoloxwarmcos``
schedule (quadratic warm-up over 5 epochs, cosine to 5 % of the peak, flat over the last
``no_aug_epochs``), mosaic and flip until the last ``no_aug_epochs`` (15) where mosaic stops
and the L1 box loss starts, EMA of the weights (decay 0.9998 with YOLOX's ramp), the
SimOTA loss of ``prednas.train.simota``. Evaluation runs the EMA weights on letterboxed
validation images, keeps detections with ``obj x class`` score above 0.01 after class-wise
torchvision NMS at IoU 0.65 (YOLOX's test settings), maps them back to image pixels and
scores them with pycocotools' ``COCOeval`` (AP, AP50, AP75, AP small/medium/large; COCO
writes -1 where a split has no box of a size).

Deviations: see ``prednas.train.coco`` (augmentation); no multi-scale training. Every
epoch is checkpointed as in classification and resumes to the same weights on CPU.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prednas.errors import PredNASError
from prednas.train.checkpoint import Checkpointer
from prednas.train.classification import from_mapping
from prednas.train.coco import CocoSplit, DetectionDataset, EvalImages, collate_detection
from prednas.train.engine import ModelEMA, TrainState, YoloxWarmCos, make_sgd, place, run_epochs
from prednas.train.runtime import Runtime, autocast, synchronize
from prednas.train.simota import IOU_LOSSES, pad_targets, yolox_loss

log = logging.getLogger("prednas.train")
METRICS: tuple[str, ...] = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


@dataclass(frozen=True)
class DetectionRecipe:
    """Everything about detector training and evaluation that changes the measured AP."""

    epochs: int = 300
    batch_size: int = 16
    input_size: int = 640
    lr_per_image: float = 0.01 / 64
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 5.0
    min_lr_ratio: float = 0.05
    no_aug_epochs: int = 15
    mosaic: bool = True
    flip_prob: float = 0.5
    ema: bool = True
    ema_decay: float = 0.9998
    iou_loss: str = "iou"
    center_radius: float = 2.5
    score_threshold: float = 0.01
    nms_threshold: float = 0.65
    max_detections: int = 100
    eval_batch_size: int = 8
    eval_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [("epochs", self.epochs >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
                  ("input_size", self.input_size >= 32 and self.input_size % 32 == 0, "a multiple of 32"),
                  ("lr_per_image", self.lr_per_image > 0, "> 0"), ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
                  ("weight_decay", self.weight_decay >= 0, ">= 0"),
                  ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, f"in [0, epochs={self.epochs}]"),
                  ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
                  ("no_aug_epochs", 0 <= self.no_aug_epochs <= self.epochs, f"in [0, epochs={self.epochs}]"),
                  ("flip_prob", 0 <= self.flip_prob <= 1, "in [0, 1]"),
                  ("ema_decay", 0 < self.ema_decay < 1, "in (0, 1)"),
                  ("iou_loss", self.iou_loss in IOU_LOSSES, f"one of {', '.join(IOU_LOSSES)}"),
                  ("score_threshold", 0 <= self.score_threshold < 1, "in [0, 1)"),
                  ("nms_threshold", 0 < self.nms_threshold <= 1, "in (0, 1]"),
                  ("max_detections", self.max_detections >= 1, ">= 1"),
                  ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"), ("eval_every", self.eval_every >= 0, ">= 0")]
        for name, ok, expected in checks:
            if not ok:
                raise PredNASError(f"recipe {name}={getattr(self, name)!r} is out of range; expected {expected}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectionRecipe:
        """Parse a recipe mapping; an unknown key is an error that lists the known ones."""
        return from_mapping(cls, data, "detection recipe")


@dataclass
class DetectionResult:
    """A finished detection run: COCO metrics of the evaluated weights and what it cost."""

    metrics: dict[str, float]
    epochs: int
    resumed_from: int
    wall_s: float
    train_s: float
    images: int
    iterations: int
    skipped: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def iterations_per_s(self) -> float:
        """Training iterations per second of this call."""
        return self.iterations / self.train_s if self.train_s > 0 else 0.0

    @property
    def images_per_s(self) -> float:
        """Training images per second of this call."""
        return self.images / self.train_s if self.train_s > 0 else 0.0


def coco_metrics(split: CocoSplit, detections: list[dict[str, Any]]) -> dict[str, float]:
    """COCOeval bbox AP, AP50, AP75, AP small/medium/large on ``split``'s images (0 with no detections)."""
    if not detections:
        return dict.fromkeys(METRICS, 0.0)
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        found = split.coco.loadRes(detections)
        evaluator = COCOeval(split.coco, found, "bbox")
        evaluator.params.imgIds = split.image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(METRICS, evaluator.stats[:6], strict=True)}


def _raw(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return model.raw(x) if hasattr(model, "raw") else model(x)


@torch.no_grad()
def predict_coco(model: nn.Module, split: CocoSplit, recipe: DetectionRecipe, device: torch.device,
                 amp: torch.dtype | None = None, workers: int = 0) -> tuple[list[dict[str, Any]], int]:
    """COCO-format detections of ``model`` on ``split`` (image pixels, COCO category ids), and files skipped."""
    from prednas.models.yolox import decode_outputs, postprocess

    model.eval()
    loader = torch.utils.data.DataLoader(EvalImages(split, recipe.input_size), batch_size=recipe.eval_batch_size,
                                         num_workers=workers, collate_fn=collate_detection)
    out, skipped = [], 0
    for images, metas, bad in loader:
        skipped += len(bad)
        if images is None:
            continue
        with autocast(device, amp):
            raw = _raw(model, images.to(device).float().div_(255.0))
        strides = getattr(model, "strides", (8, 16, 32))
        found = postprocess(decode_outputs([r.float() for r in raw], strides), recipe.score_threshold,
                            recipe.nms_threshold, recipe.max_detections)
        for (index, scale), det in zip(metas, found, strict=True):
            out += _to_coco(split, index, scale, det)
    return out, skipped


def _to_coco(split: CocoSplit, index: int, scale: float, det: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    record = split.records[index]
    boxes = (det["boxes"].cpu().double() / scale).numpy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, record.width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, record.height)
    scores, labels = det["scores"].cpu().tolist(), det["labels"].cpu().tolist()
    return [{"image_id": record.image_id, "category_id": split.class_ids[label],
             "bbox": [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2),
                      round(float(b[3] - b[1]), 2)], "score": round(float(s), 5)}
            for b, s, label in zip(boxes, scores, labels, strict=True) if b[2] > b[0] and b[3] > b[1]]


def training_state(model: nn.Module, recipe: DetectionRecipe, steps_per_epoch: int, generator: torch.Generator,
                   device: torch.device, amp: torch.dtype | None) -> TrainState:
    """The optimizer, schedule, EMA and scaler of a detector run under ``recipe``."""
    lr = recipe.lr_per_image * recipe.batch_size
    optimizer = make_sgd(model, lr=lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                         weight_decay=recipe.weight_decay, device=device)
    schedule = YoloxWarmCos(steps_per_epoch * recipe.epochs, round(recipe.warmup_epochs * steps_per_epoch),
                            steps_per_epoch * recipe.no_aug_epochs, recipe.min_lr_ratio)
    ema = ModelEMA(model, recipe.ema_decay) if recipe.ema else None
    return TrainState(model, optimizer, schedule, generator, device, amp, ema)


class EpochSampler(torch.utils.data.Sampler):
    """Batches of ``(index, seed, mosaic)`` keys, drawn from the run's generator when an epoch starts.

    One loader (and, with workers, one set of persistent worker processes) serves every
    epoch; each ``iter`` draws the epoch's order and per-sample seeds at once, in the main
    process, so a run depends on the seed alone and resumes exactly.
    """

    def __init__(self, size: int, batch_size: int, generator: torch.Generator) -> None:
        self.size, self.batch_size, self.generator = size, batch_size, generator
        self.drop_last = size > batch_size
        self.mosaic = False

    def __len__(self) -> int:
        return self.size // self.batch_size if self.drop_last else 1

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        # A generator: the draws happen at the first batch, not at iter(). A multi-process
        # DataLoader calls iter() twice when it starts and drops the first iterator unused.
        order = torch.randperm(self.size, generator=self.generator).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=self.generator).tolist()
        keys = [(i, seed, self.mosaic) for i, seed in zip(order, seeds, strict=True)]
        yield from torch.utils.data.BatchSampler(keys, self.batch_size, self.drop_last)


def collate_training(items: list[tuple[Any, Any]]) -> tuple[torch.Tensor | None, torch.Tensor, list[str]]:
    """Stack images and pad their targets to ``(B, G, 5)`` (in the worker, so they can be pinned)."""
    images, targets, skipped = collate_detection(items)
    return images, pad_targets(targets), skipped


def training_loader(dataset: DetectionDataset, sampler: EpochSampler, workers: int,
                    device: torch.device) -> torch.utils.data.DataLoader:
    """The loader of a whole run: persistent workers, pinned batches on CUDA.

    Its own generator seeds the workers' base seed (unused: every sample's draws come from
    its key), so starting the loader leaves torch's global generator alone.
    """
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                       collate_fn=collate_training, pin_memory=device.type == "cuda",
                                       persistent_workers=workers > 0, generator=torch.Generator())


def _train_epoch(run: TrainState, loader: torch.utils.data.DataLoader, recipe: DetectionRecipe, epoch: int,
                 num_classes: int, channels_last: bool) -> dict[str, float]:
    late = epoch >= recipe.epochs - recipe.no_aug_epochs
    loader.batch_sampler.mosaic = recipe.mosaic and not late
    run.model.train()
    strides = getattr(run.model, "strides", (8, 16, 32))
    sums = {key: torch.zeros((), device=run.device) for key in ("loss", "iou", "obj", "cls", "l1")}
    seen = steps = 0
    skipped: list[str] = []
    start = time.perf_counter()
    for images, targets, bad in loader:
        skipped += bad
        if images is not None:
            x = images.to(run.device, non_blocking=True).float().div_(255.0)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(run.device, run.amp):
                outputs = run.model(x)
            losses = yolox_loss(outputs, targets, num_classes, strides, iou_type=recipe.iou_loss, use_l1=late,
                                center_radius=recipe.center_radius)
            run.step(losses["loss"])
            for key in sums:
                sums[key] += losses[key].detach()
            seen += len(images)
            steps += 1
        run.scheduler.step()
    synchronize(run.device)
    seconds = time.perf_counter() - start
    means = {key: float(value) / max(steps, 1) for key, value in sums.items()}
    if skipped:
        log.warning("epoch %d: skipped %d unreadable images (first: %s)", epoch + 1, len(skipped), skipped[0])
    if seen == 0:
        raise PredNASError(f"epoch {epoch + 1} had no readable training images ({len(skipped)} skipped)")
    if not math.isfinite(means["loss"]):
        raise PredNASError(f"detector training diverged at epoch {epoch + 1}; lower lr_per_image "
                           f"({recipe.lr_per_image:g})")
    return {"epoch": epoch + 1, **means, "seconds": seconds, "images": seen, "iterations": steps,
            "skipped": len(skipped), "lr": run.optimizer.param_groups[0]["lr"]}


def train_detector(model: nn.Module, train: CocoSplit, val: CocoSplit, recipe: DetectionRecipe,
                   runtime: Runtime | None = None, checkpointer: Checkpointer | None = None,
                   on_epoch: Callable[[dict[str, float]], None] | None = None) -> DetectionResult:
    """Train ``model`` on ``train`` with ``recipe`` (resuming from ``checkpointer``) and score it on ``val``."""
    runtime = runtime or Runtime()
    started = time.perf_counter()
    device, amp, channels_last = place(model, runtime)
    workers = runtime.loader_workers(device)
    dataset = DetectionDataset(train, recipe.input_size, recipe.flip_prob)
    sampler = EpochSampler(len(dataset), recipe.batch_size, torch.Generator().manual_seed(recipe.seed))
    loader = training_loader(dataset, sampler, workers, device)
    run = training_state(model, recipe, len(sampler), sampler.generator, device, amp)
    loaded = checkpointer.load() if checkpointer else None
    start = loaded[0] if loaded else 0
    if loaded is not None and "result" in loaded[1]:
        return DetectionResult(**loaded[1]["result"], resumed_from=start, wall_s=time.perf_counter() - started,
                               train_s=0.0, images=0, iterations=0, history=list(loaded[1]["history"]))

    def finish(epoch: int, stats: dict[str, float]) -> dict[str, Any] | None:
        final = epoch + 1 == recipe.epochs
        if not final and not (recipe.eval_every and (epoch + 1) % recipe.eval_every == 0):
            return None
        model_eval = run.ema.module if run.ema is not None else run.model
        detections, bad = predict_coco(model_eval, val, recipe, device, amp, workers)
        metrics = coco_metrics(val, detections)
        stats |= {f"val_{k}": v for k, v in metrics.items()}
        skipped = int(sum(h["skipped"] for h in run.history)) + stats["skipped"] + bad
        return {"metrics": metrics, "epochs": recipe.epochs, "skipped": int(skipped)} if final else None

    result = run_epochs(run, epochs=recipe.epochs, seed=recipe.seed, loaded=loaded, finish=finish,
                        train_epoch=lambda epoch: _train_epoch(run, loader, recipe, epoch, train.num_classes,
                                                               channels_last),
                        checkpointer=checkpointer, on_epoch=on_epoch)
    trained = run.history[start:]
    return DetectionResult(**result, resumed_from=start, wall_s=time.perf_counter() - started,
                           train_s=sum(h["seconds"] for h in trained), images=int(sum(h["images"] for h in trained)),
                           iterations=int(sum(h["iterations"] for h in trained)), history=list(run.history))
