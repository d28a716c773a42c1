"""Where and how a training run executes: device, precision, memory format, loader workers.

These settings never change the recipe; on CPU the defaults (fp32, contiguous tensors)
give bit-identical runs for one seed. On CUDA, ``auto`` turns on bfloat16 autocast where
the GPU supports it (no gradient scaler: bfloat16 has float32's range) and float16
autocast with a gradient scaler only where it does not, channels-last tensors, pinned
host memory and cuDNN's autotuner; "fp32" there keeps PyTorch's default of TF32
convolutions. A float16 run steps a fused SGD, which reads the scaler's inf check on the
device, so no precision makes the training loop wait for the host. ``compile`` runs the
classifier's training forward through ``torch.compile``: faster steps after a compilation
that takes about a minute per architecture on a CPU, so it pays only for long trainings
(off by default; see ``prednas bench training-throughput --compile``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prednas.errors import PredNASError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Runtime:
    """Execution settings of a training run."""

    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    workers: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise PredNASError(f"unknown precision {self.precision!r}; expected one of: {', '.join(PRECISIONS)}")
        if self.workers is not None and self.workers < 0:
            raise PredNASError(f"workers must be >= 0, got {self.workers}")
        if not isinstance(self.compile, bool):
            raise PredNASError(f"compile={self.compile!r} is not a boolean; expected true or false")
        if self.compile and not any(shutil.which(name) for name in (os.environ.get("CXX"), "g++", "c++", "clang++")
                                    if name):
            raise PredNASError("compile=true needs a C++ compiler on PATH (torch.compile builds its kernels), "
                               "found none; install g++ in the image or set compile: false")

    def torch_device(self) -> torch.device:
        """The device to train on (``auto``: the first CUDA device when there is one)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise PredNASError(f"unknown device {self.device!r}; expected auto, cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise PredNASError(f"device {self.device!r} was asked for but CUDA is not available here")
        if device.type == "cpu" and self.precision == "fp16":
            raise PredNASError("precision fp16 needs a CUDA device; on CPU use fp32 or bf16")
        return device

    def amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype, or None for full precision."""
        name = self.precision
        if name == "auto":
            name = "fp32" if device.type != "cuda" else "bf16" if bf16_supported(device) else "fp16"
        return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[name]

    def use_channels_last(self, device: torch.device) -> bool:
        """Channels-last tensors (default: on CUDA)."""
        return device.type == "cuda" if self.channels_last is None else self.channels_last

    def loader_workers(self, device: torch.device) -> int:
        """DataLoader workers for file data (default: up to 8 on CUDA, none on CPU)."""
        if self.workers is not None:
            return self.workers
        return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0

    def describe(self, device: torch.device) -> dict[str, Any]:
        """The resolved settings, for configs and reports."""
        dtype = self.amp_dtype(device)
        return {"device": device.type, "precision": str(dtype).removeprefix("torch.") if dtype else "fp32",
                "channels_last": self.use_channels_last(device)}


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively (CUDA compute capability 8.0 and later)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast for ``dtype`` on ``device``, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (so that timings are true)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def device_flags(device: torch.device) -> Iterator[None]:
    """On CUDA, let cuDNN pick the fastest kernels for the (fixed) input sizes; restored afterwards."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's global generators seeded, restoring them afterwards."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.manual_seed(seed)
        yield


def build_seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A network built with its initial weights drawn from ``seed``."""
    with seeded(seed):
        return factory()


def measure_latency(model: nn.Module, shape: tuple[int, ...], device: torch.device, *, warmup: int = 3,
                    repeats: int = 10, channels_last: bool = False) -> float:
    """Median milliseconds of one inference forward pass at ``shape`` (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            synchronize(device)
            start = time.perf_counter()
            model(x)
            synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    model.train(was_training)
    return float(sorted(times)[len(times) // 2])
