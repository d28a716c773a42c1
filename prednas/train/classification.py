"""Proxy training of a classifier (the paper's AnyNet proxy, Sec. IV-B, after RegNet's pycls).

The recipe follows pycls' ImageNet training of RegNet: SGD with Nesterov momentum 0.9,
weight decay on conv and linear weights only, a linear warm-up from ``warmup_factor``
times the learning rate, then cosine decay to zero, stepped per iteration; cross-entropy
with optional label smoothing. Defaults are pycls' (lr 0.1 for batch 128, weight decay
5e-5, no warm-up, no smoothing); the paper trains each sample 10 epochs ("the proxy task
setting in [40]"). Augmentation is described in ``prednas.train.data``.

``zero_init_residual`` (on by default) zeroes the last BN scale of every residual branch
before training, so each block starts as its shortcut. AnyNetX's He initialisation counts
the fan-out of a grouped 3x3 over all output channels, which leaves its weights small;
without this the first steps at lr 0.1 see gradient norms near 50 (about 1.6 with it) and the
loss of a RegNetX-200MF shape rises above chance before it falls.

Every finished epoch is checkpointed (``prednas.train.checkpoint``) with the model,
optimizer, scheduler, grad-scaler and generator states; a rerun resumes from the last one
and, on CPU, ends with exactly the weights and accuracy of an uninterrupted run. A run
whose checkpoint already holds the final result returns it without training.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from prednas.errors import PredNASError
from prednas.train.checkpoint import Checkpointer
from prednas.train.data import ArraySplit, ClassificationData, make_batches
from prednas.train.engine import TrainState, WarmupCosine, make_sgd, place, run_epochs
from prednas.train.runtime import Runtime, autocast, synchronize

log = logging.getLogger("prednas.train")


@dataclass(frozen=True)
class ClassificationRecipe:
    """Everything about training that changes the measured accuracy."""

    epochs: int = 10
    batch_size: int = 128
    resolution: int | None = None  # None: the images' own size (arrays) or 224 (files)
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.1
    augment: bool = True
    zero_init_residual: bool = True
    crop_ratio: float = 0.875
    eval_batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [("epochs", self.epochs >= 1, ">= 1"), ("batch_size", self.batch_size >= 2, ">= 2"),
                  ("lr", self.lr > 0, "> 0"), ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
                  ("weight_decay", self.weight_decay >= 0, ">= 0"),
                  ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
                  ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, f"in [0, epochs={self.epochs}]"),
                  ("warmup_factor", 0 < self.warmup_factor <= 1, "in (0, 1]"),
                  ("crop_ratio", 0 < self.crop_ratio <= 1, "in (0, 1]"),
                  ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
                  ("resolution", self.resolution is None or self.resolution >= 8, ">= 8 or null")]
        for name, ok, expected in checks:
            if not ok:
                raise PredNASError(f"recipe {name}={getattr(self, name)!r} is out of range; expected {expected}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassificationRecipe:
        """Parse a recipe mapping; an unknown key is an error that lists the known ones."""
        return from_mapping(cls, data, "classification recipe")

    def resolved_resolution(self, data: ClassificationData) -> int:
        """The training resolution for ``data``."""
        if self.resolution is not None:
            return self.resolution
        return int(data.train.images.shape[1]) if isinstance(data.train, ArraySplit) else 224


def from_mapping(cls: type, data: dict[str, Any], what: str) -> Any:
    """Build a dataclass from a mapping, rejecting unknown keys with one line."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PredNASError(f"unknown {what} key {unknown[0]!r}; expected some of: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise PredNASError(f"bad {what}: {exc}") from None


@dataclass
class TrainResult:
    """A finished classification run."""

    top1: float
    top5: float
    epochs: int
    resumed_from: int
    wall_s: float
    train_s: float
    images: int
    skipped: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        """Training throughput of this call (0 when nothing was trained)."""
        return self.images / self.train_s if self.train_s > 0 else 0.0

    @property
    def epoch_s(self) -> float:
        """Mean seconds per epoch trained by this call."""
        trained = self.epochs - self.resumed_from
        return self.train_s / trained if trained else 0.0


def _train_epoch(run: TrainState, batches: Any, epoch: int, amp: torch.dtype | None, channels_last: bool,
                 criterion: nn.Module, forward: Callable[[torch.Tensor], Any] | None = None) -> dict[str, float]:
    model, device = run.model, run.device
    forward = model if forward is None else forward
    model.train()
    total_loss = torch.zeros((), device=device)
    seen, skipped, start = 0, [], time.perf_counter()
    for batch in batches:
        skipped += batch.skipped
        if len(batch.labels):
            x = batch.images.contiguous(memory_format=torch.channels_last) if channels_last else batch.images
            with autocast(device, amp):
                loss = criterion(forward(x), batch.labels)
            run.step(loss)
            total_loss += loss.detach().float() * len(batch.labels)
            seen += len(batch.labels)
        run.scheduler.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    if skipped:
        log.warning("epoch %d: skipped %d unreadable images (first: %s)", epoch + 1, len(skipped), skipped[0])
    if seen == 0:
        raise PredNASError(f"epoch {epoch + 1} had no readable training images ({len(skipped)} skipped)")
    loss_value = float(total_loss) / seen
    if not math.isfinite(loss_value):
        raise PredNASError(f"training diverged at epoch {epoch + 1} (loss {loss_value}); "
                           f"lower the learning rate (lr={run.optimizer.defaults['lr']})")
    return {"epoch": epoch + 1, "loss": loss_value, "seconds": seconds, "images": seen, "skipped": len(skipped),
            "lr": run.optimizer.param_groups[0]["lr"]}


@torch.no_grad()
def evaluate_classifier(model: nn.Module, batches: Any, device: torch.device, amp: torch.dtype | None = None,
                        channels_last: bool = False) -> dict[str, float]:
    """Top-1 and top-5 accuracy (percent) over ``batches``, and the images skipped."""
    model.eval()
    correct1 = torch.zeros((), device=device, dtype=torch.int64)
    correct5 = torch.zeros_like(correct1)
    seen = skipped = 0
    for batch in batches:
        skipped += len(batch.skipped)
        if not len(batch.labels):
            continue
        x = batch.images.contiguous(memory_format=torch.channels_last) if channels_last else batch.images
        with autocast(device, amp):
            logits = model(x)
        top = logits.float().topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == batch.labels[:, None]
        correct1 += hits[:, 0].sum()
        correct5 += hits.any(dim=1).sum()
        seen += len(batch.labels)
    if seen == 0:
        raise PredNASError(f"no readable validation images ({skipped} skipped)")
    return {"top1": 100.0 * float(correct1) / seen, "top5": 100.0 * float(correct5) / seen, "skipped": skipped}


def train_classifier(model: nn.Module, data: ClassificationData, recipe: ClassificationRecipe,
                     runtime: Runtime | None = None, checkpointer: Checkpointer | None = None,
                     on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data`` with ``recipe`` (resuming from ``checkpointer``) and evaluate it."""
    runtime = runtime or Runtime()
    started = time.perf_counter()
    if recipe.zero_init_residual:
        zero_init_residual(model)
    device, amp, channels_last = place(model, runtime)
    common = {"data": data, "resolution": recipe.resolved_resolution(data), "device": device,
              "workers": runtime.loader_workers(device), "crop_ratio": recipe.crop_ratio}
    generator = torch.Generator().manual_seed(recipe.seed)
    train_batches = make_batches(data.train, batch_size=recipe.batch_size, train=True, augment=recipe.augment,
                                 generator=generator, **common)
    run = training_state(model, recipe, len(train_batches), generator, device, amp)
    loaded = checkpointer.load() if checkpointer else None
    start = loaded[0] if loaded else 0
    if loaded is not None and "result" in loaded[1]:
        return TrainResult(**loaded[1]["result"], resumed_from=start, wall_s=time.perf_counter() - started,
                           train_s=0.0, images=0, history=list(loaded[1]["history"]))
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    forward = torch.compile(model) if runtime.compile else model  # shares the parameters; checkpoints stay plain

    def finish(epoch: int, stats: dict[str, float]) -> dict[str, Any] | None:
        if epoch + 1 < recipe.epochs:
            return None
        val = make_batches(data.val, batch_size=recipe.eval_batch_size, train=False, augment=False,
                           generator=run.generator, **common)
        metrics = evaluate_classifier(run.model, val, device, amp, channels_last)
        stats |= {"val_top1": metrics["top1"], "val_top5": metrics["top5"]}
        skipped = int(sum(h["skipped"] for h in run.history)) + stats["skipped"] + metrics["skipped"]
        return {"top1": metrics["top1"], "top5": metrics["top5"], "epochs": recipe.epochs, "skipped": int(skipped)}

    result = run_epochs(run, epochs=recipe.epochs, seed=recipe.seed, loaded=loaded, finish=finish,
                        train_epoch=lambda epoch: _train_epoch(run, train_batches, epoch, amp, channels_last,
                                                               criterion, forward),
                        checkpointer=checkpointer, on_epoch=on_epoch)
    trained = run.history[start:]
    return TrainResult(**result, resumed_from=start, wall_s=time.perf_counter() - started,
                       train_s=sum(h["seconds"] for h in trained), images=int(sum(h["images"] for h in trained)),
                       history=list(run.history))


def zero_init_residual(model: nn.Module) -> int:
    """Zero the scale of the last BN of every residual branch (a module with a branch ``f`` and ``proj``).

    Each residual block then starts as its shortcut (Goyal et al. 2017; pycls'
    ``ZERO_INIT_FINAL_GAMMA``, torchvision's ``zero_init_residual``). Returns the blocks changed.
    """
    count = 0
    for module in model.modules():
        branch = getattr(module, "f", None)
        if isinstance(branch, nn.Module) and hasattr(module, "proj"):
            norms = [m for m in branch.modules() if isinstance(m, nn.BatchNorm2d)]
            if norms:
                nn.init.zeros_(norms[-1].weight)
                count += 1
    return count


def training_state(model: nn.Module, recipe: ClassificationRecipe, steps_per_epoch: int, generator: torch.Generator,
                   device: torch.device, amp: torch.dtype | None) -> TrainState:
    """The optimizer, schedule and scaler of a classifier run under ``recipe``."""
    optimizer = make_sgd(model, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                         weight_decay=recipe.weight_decay, device=device)
    schedule = WarmupCosine(steps_per_epoch * recipe.epochs, round(recipe.warmup_epochs * steps_per_epoch),
                            recipe.warmup_factor)
    return TrainState(model, optimizer, schedule, generator, device, amp)
