"""What the classification and detection loops share: optimizer groups, schedules, EMA, run state.

``TrainState`` gathers everything that evolves during a run (model, optimizer, learning
rate schedule, gradient scaler, the data generator, torch's global generators, an optional
EMA copy, the per-epoch history) and turns it into a checkpoint state and back, so that a
resumed run continues bit for bit. ``ModelEMA`` follows YOLOX's ``ModelEMA``: the decay ramps
up as ``decay * (1 - exp(-updates / 2000))`` and every floating entry of the state dict
(weights and batch-norm statistics) is averaged.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prednas.train.runtime import Runtime, device_flags, seeded

log = logging.getLogger("prednas.train")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights; none on biases and normalisation parameters."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    plain = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def make_sgd(model: nn.Module, *, lr: float, momentum: float, nesterov: bool, weight_decay: float,
             device: torch.device) -> torch.optim.SGD:
    """SGD over ``param_groups``; fused on CUDA (one kernel, and the grad scaler's inf check stays on the device)."""
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum,
                           nesterov=nesterov and momentum > 0, fused=device.type == "cuda" or None)


class WarmupCosine:
    """Learning-rate multiplier per iteration: linear warm-up from ``factor``, then cosine to zero (pycls)."""

    def __init__(self, total: int, warmup: int, factor: float) -> None:
        self.total, self.warmup, self.factor = total, warmup, factor

    def __call__(self, step: int) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(step, self.total) / max(1, self.total)))
        if step < self.warmup:
            alpha = step / self.warmup
            return cosine * (self.factor * (1.0 - alpha) + alpha)
        return cosine


class YoloxWarmCos:
    """YOLOX's ``yoloxwarmcos`` multiplier: quadratic warm-up from 0, cosine to ``min_ratio``, then flat."""

    def __init__(self, total: int, warmup: int, flat: int, min_ratio: float) -> None:
        self.total, self.warmup, self.flat, self.min_ratio = total, warmup, flat, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step / self.warmup) ** 2
        cosine_steps = self.total - self.warmup - self.flat
        if step >= self.total - self.flat or cosine_steps <= 0:
            return self.min_ratio
        progress = (step - self.warmup) / cosine_steps
        return self.min_ratio + 0.5 * (1.0 - self.min_ratio) * (1.0 + math.cos(math.pi * progress))


class ModelEMA:
    """Exponential moving average of a model's state, with YOLOX's warm-up of the decay."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, tau: float = 2000.0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``."""
        self.updates += 1
        d = self.decay * (1.0 - math.exp(-self.updates / self.tau))
        current = model.state_dict()
        averaged, source = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                source.append(current[name].detach())
            else:
                value.copy_(current[name])
        torch._foreach_mul_(averaged, d)  # one launch per group of tensors, not one per tensor
        torch._foreach_add_(averaged, source, alpha=1.0 - d)

    def state_dict(self) -> dict[str, Any]:
        """Weights and update count."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


class TrainState:
    """The evolving pieces of one run and their round trip through a checkpoint state."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
                 generator: torch.Generator, device: torch.device, amp: torch.dtype | None,
                 ema: ModelEMA | None = None) -> None:
        self.model, self.optimizer, self.generator, self.device, self.ema = model, optimizer, generator, device, ema
        self.amp = amp
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        self.history: list[dict[str, float]] = []

    def step(self, loss: torch.Tensor) -> None:
        """One optimisation step on ``loss`` (scaled under float16), then the schedule and the EMA."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this run is."""
        rng = {"data": self.generator.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        out = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
               "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng,
               "history": list(self.history)}
        if self.ema is not None:
            out["ema"] = self.ema.state_dict()
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Load a state written by ``state()``."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.history = list(state["history"])


def place(model: nn.Module, runtime: Runtime) -> tuple[torch.device, torch.dtype | None, bool]:
    """Move ``model`` to the runtime's device (channels-last there if asked); returns device, autocast dtype, layout."""
    device = runtime.torch_device()
    amp, channels_last = runtime.amp_dtype(device), runtime.use_channels_last(device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return device, amp, channels_last


def run_epochs(run: TrainState, *, epochs: int, seed: int, loaded: tuple[int, dict[str, Any]] | None,
               train_epoch: Callable[[int], dict[str, float]], finish: Callable[[int, dict[str, float]], Any],
               checkpointer: Any = None, on_epoch: Callable[[dict[str, float]], None] | None = None) -> Any:
    """Train the epochs left after ``loaded`` under ``seed``, checkpointing each; returns the final result.

    ``finish(epoch, stats)`` runs after every epoch: it may add figures to ``stats`` (an
    intermediate evaluation) and returns the run's result after the last epoch (else None).
    Each epoch then logs one line (``epoch_line``) on ``prednas.train`` at INFO.
    """
    start = loaded[0] if loaded else 0
    result = None
    began = time.perf_counter()
    with seeded(seed, run.device), device_flags(run.device):
        if loaded is not None:
            run.restore(loaded[1])
            log.info("resuming from the checkpoint after epoch %d of %d", start, epochs)
        for epoch in range(start, epochs):
            stats = train_epoch(epoch)
            result = finish(epoch, stats)
            eta = (time.perf_counter() - began) / (epoch + 1 - start) * (epochs - epoch - 1)
            log.info(epoch_line(stats, epochs, eta))
            run.history.append(stats)
            state = run.state()
            if result is not None:
                state["result"] = result
            if checkpointer is not None:
                checkpointer.save(epoch + 1, state)
            if on_epoch is not None:
                on_epoch(stats)
    return result


def epoch_line(stats: dict[str, float], epochs: int, eta_s: float) -> str:
    """``epoch 3/10 loss 1.2345 top-1 61.20 % 2310 images/s ETA 0:42``: figures the epoch already has on the host.

    Accuracy appears where the epoch was evaluated (``val_top1`` after a classifier's last
    epoch, ``val_ap`` after a detector's evaluation epochs).
    """
    parts = [f"epoch {stats['epoch']:.0f}/{epochs}", f"loss {stats['loss']:.4f}"]
    if "val_top1" in stats:
        parts.append(f"top-1 {stats['val_top1']:.2f} %")
    if "val_ap" in stats:
        parts.append(f"AP {100.0 * stats['val_ap']:.1f}")
    rate = stats["images"] / stats["seconds"] if stats.get("seconds") else 0.0
    minutes, seconds = divmod(round(eta_s), 60)
    return " ".join([*parts, f"{rate:.0f} images/s", f"ETA {minutes}:{seconds:02d}"])
