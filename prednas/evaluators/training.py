"""What the training evaluators share: building a space's network, checkpoint keys, latency, shards.

A training evaluator builds the architecture with the space module's
``build(arch, num_classes)`` (so the classifier gets the data's classes, not the
space's default 1000), seeds its initial weights with the recipe's seed, and checkpoints
under a key made of the space, the evaluator-config hash and the architecture id, in the
step's output folder and the artifact store. Measured latency is the median of batch-1
inference passes on the evaluation device at the space's deployment input size.

``evaluate_many`` measures a shard of architectures, one after the other or
``concurrency`` at a time in worker processes that share the device: a small proxy
(32 px) leaves most of a GPU idle, and several trainings fill it. Each worker trains and
checkpoints exactly as ``evaluate`` does; the results come back in input order.
Latency is then measured in the calling process, one network at a time, so that the
neighbours' training does not inflate it.
"""

from __future__ import annotations

import multiprocessing
import pickle
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prednas.errors import PredNASError, SettingError
from prednas.evaluators.base import Evaluation, config_hash
from prednas.evaluators.registry import check_concurrency
from prednas.spaces.base import arch_id
from prednas.spaces.fields import int_expected, int_in
from prednas.train.checkpoint import BlobStore, Checkpointer, fingerprint
from prednas.train.runtime import Runtime, build_seeded, measure_latency


def build_network(space: Any, arch: Any, num_classes: int, seed: int) -> nn.Module:
    """The network of ``arch`` with ``num_classes`` outputs and initial weights drawn from ``seed``."""
    factory = getattr(sys.modules.get(type(space).__module__), "build", None)
    if factory is None:
        raise PredNASError(f"space {getattr(space, 'name', space)!r} cannot build networks to train")
    return build_seeded(lambda: factory(arch, num_classes), seed)


def check_input_size(space: str, value: Any, limits: tuple[int, int, int], key: str = "cost_input_size",
                     source: str = "") -> int:
    """``value`` as an input size the ``space`` cost model accepts (``limits``: lo, hi, step), else the
    one-line error naming ``key`` and, where the size came from elsewhere, ``source``."""
    if not int_in(value, *limits):
        raise SettingError(key, f"{value!r}{source}: expected {int_expected(*limits)}, an input size the {space} "
                                f"space's cost model accepts")
    return int(value)


def runtime_from(device: str, precision: str, workers: int | None, compile: bool = False) -> Runtime:
    """A ``Runtime`` from evaluator options."""
    return Runtime(device=device, precision=precision, workers=workers, compile=compile)


def network_latency(model: nn.Module, size: int, runtime: Runtime, repeats: int = 10) -> float:
    """Median batch-1 inference milliseconds of ``model`` at ``size`` px on the runtime's device and layout."""
    device = runtime.torch_device()
    channels_last = runtime.use_channels_last(device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return measure_latency(model, (1, 3, size, size), device, repeats=repeats, channels_last=channels_last)


class CheckpointingMixin:
    """Checkpoint placement for an evaluator: a folder and/or a store, set by the running step.

    ``_cached`` names attributes that hold loaded data: they are left out when the
    evaluator is sent to a worker process, which loads its own copy on first use.
    """

    checkpoint_dir: Path | None = None
    store: BlobStore | None = None
    _cached: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self._cached:
            state[name] = None
        return state

    def attach(self, checkpoint_dir: str | Path | None = None, store: BlobStore | None = None) -> Any:
        """Checkpoint every epoch into ``checkpoint_dir`` and/or ``store`` (what a pipeline step calls)."""
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.store = store
        return self

    def checkpointer(self, space: Any, arch: Any, config: dict[str, Any]) -> Checkpointer | None:
        """The checkpointer of one architecture under this evaluator's config (None without a place)."""
        if self.checkpoint_dir is None and self.store is None:
            return None
        aid = arch_id(space, arch)
        fp = fingerprint({"config": config, "space": space.name, "arch": space.to_dict(arch)})
        key = f"artifacts/checkpoints/{space.name}/{config_hash(config)}/{aid}.pt"
        directory = self.checkpoint_dir / space.name / config_hash(config) if self.checkpoint_dir else None
        return Checkpointer(fp, directory, self.store, key)


def evaluate_many(evaluator: Any, space: Any, archs: Sequence[Any], concurrency: int | None = None) -> list[Evaluation]:
    """Measure ``archs`` with ``evaluator``, ``concurrency`` at a time (default: its own), in input order.

    ``concurrency`` 1 calls ``evaluator.evaluate`` for each in turn. Above 1, that many
    spawned worker processes (never more than architectures) each train one architecture
    at a time on the evaluator's device, with this process's torch threads split between
    them; the results equal the sequential ones where training is deterministic (on CPU,
    under the same threads per training). The evaluator, with its checkpoint folder and
    store, is sent to the workers by pickling: their checkpoints land where ``evaluate``
    puts them, so a store must be one that other processes reach (a folder, S3).
    """
    archs = list(archs)
    workers = min(check_concurrency(concurrency if concurrency is not None else
                                    getattr(evaluator, "concurrency", 1)), len(archs))
    if workers <= 1:
        return [evaluator.evaluate(space, arch) for arch in archs]
    try:
        pickle.dumps((evaluator, space))  # fail here, in one line, rather than inside the pool
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise PredNASError(f"evaluator concurrency={workers} needs an evaluator and store that can be sent to "
                           f"worker processes ({exc}); use concurrency 1") from None
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(evaluator, space, threads)) as pool:
            results = list(pool.map(_evaluate_in_worker, archs))
    except BrokenProcessPool:
        raise PredNASError(f"a training worker died (out of memory?) while {workers} architectures trained at once; "
                           f"finished epochs are checkpointed: rerun with a lower evaluator concurrency") from None
    if not getattr(evaluator, "latency", False):
        return results
    return [replace(result, cost={**result.cost, "latency_ms": evaluator.latency_ms(space, arch)})
            for arch, result in zip(archs, results, strict=True)]


_JOB: dict[str, Any] = {}  # a worker process's evaluator and space, set once when it starts


def _start_worker(evaluator: Any, space: Any, threads: int) -> None:
    torch.set_num_threads(threads)
    if hasattr(evaluator, "latency"):
        evaluator.latency = False  # measured afterwards by the caller, without neighbours
    _JOB.update(evaluator=evaluator, space=space)


def _evaluate_in_worker(arch: Any) -> Evaluation:
    return _JOB["evaluator"].evaluate(_JOB["space"], arch)
