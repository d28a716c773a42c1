"""Counting a built network's cost by running it (``torch.utils.flop_counter``).

The counter is the cross-check of the analytic cost models in ``prednas.spaces``: it
counts what the network actually executes. ``FlopCounterMode`` reports 2 x the
multiply-adds of convolutions and matrix products (bias additions, normalisation,
activations, pooling and resizing are not counted), so ``macs`` here is exactly
convolution and linear-layer multiply-adds, the convention the analytic models use.

A network built on the ``meta`` device (``with torch.device("meta"): build(arch)``)
allocates and computes nothing: counting even a 32 GF network that way takes about a
second (module construction dominates) and no memory (``counted_cost``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module) -> int:
    """Number of trainable parameter elements (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_cost(module: nn.Module, input_size: int, *,
               forward: Callable[[torch.Tensor], Any] | None = None) -> dict[str, int]:
    """MACs, FLOPs (2 x MACs) and params of ``module`` run in eval mode on one 3-channel square image.

    The image is made on the module's own device; ``forward`` replaces ``module.__call__``
    (a detector counts its raw forward, without the data-dependent NMS).
    """
    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    x = torch.zeros(1, 3, input_size, input_size, device=device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            (forward or module)(x)
    finally:
        module.train(was_training)
    flops = int(counter.get_total_flops())
    assert flops % 2 == 0, "flop_counter counts 2 per multiply-add"
    return {"macs": flops // 2, "flops": flops, "params": count_params(module)}


def counted_cost(builder: Callable[[], nn.Module], input_size: int,
                 forward: Callable[[nn.Module, torch.Tensor], Any] | None = None) -> dict[str, int]:
    """Build a network on the meta device with ``builder()`` and count it."""
    with torch.device("meta"):
        module = builder()
    run = None if forward is None else (lambda x: forward(module, x))
    return count_cost(module, input_size, forward=run)


def measure_latency_ms(module: nn.Module, input_size: int, *, device: str | torch.device = "cpu", batch: int = 1,
                       warmup: int = 3, repeats: int = 10,
                       forward: Callable[[torch.Tensor], Any] | None = None) -> float:
    """Median wall-clock milliseconds of one eval-mode forward pass on ``device`` (the auxiliary latency target).

    The module is moved to ``device``; CUDA work is synchronised around each timed pass.
    """
    import time

    device = torch.device(device)
    module = module.to(device).eval()
    x = torch.rand(batch, 3, input_size, input_size, device=device)
    run = forward or module
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            run(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return float(sorted(times)[len(times) // 2])
