"""Acceptance benchmarks of proxy training (issue: classification and detection evaluators).

- ``classifier``: a RegNetX-200MF-shaped AnyNet (RegNet paper: depths 1, 1, 4, 7; widths
  24, 56, 152, 368; group width 8; bottleneck ratio 1) trained on an ``.npz`` dataset,
  with epoch times, images per second and the final top-1.
- ``fidelity``: Kendall tau between short-proxy and longer training of seeded random
  AnyNet architectures (drawn from paper Table III's range, kept below a MACs cap so CPU
  runs stay affordable).
- ``resume``: an uninterrupted run against one killed (SIGKILL, in a child process) after
  epoch ``kill_after`` and rerun from its checkpoint.
- ``detection_overfit``: a small YOLOX-space detector trained and evaluated on the same
  few COCO images until AP50 reaches a target, within a bounded number of iterations.
- ``shard_concurrency``: one evaluate step's shard of seeded random AnyNets trained by the
  product's evaluator (``evaluate_many``, checkpoints on) one after the other and then
  ``concurrency`` at a time, with the wall time of each and whether the results agree.
(Training throughput, the model step against the loop, is ``prednas.bench.throughput``.)
Each returns a JSON-ready dict; the ``print_*`` functions render them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prednas.errors import PredNASError
from prednas.train.checkpoint import Checkpointer
from prednas.train.classification import ClassificationRecipe, TrainResult, train_classifier
from prednas.train.data import ClassificationData, DataSpec, load_classification_data
from prednas.train.runtime import Runtime, build_seeded

REGNETX_200MF = {"depths": [1, 1, 4, 7], "widths": [24, 56, 152, 368], "ratios": [1.0] * 4, "groups": [3, 7, 19, 46]}
SMALL_DETECTOR = {"stem": 16, "backbone": {"depths": [1, 1, 1, 1], "widths": [16, 32, 64, 128], "ratios": [0.5] * 4},
                  "neck": {"depths": [1, 1, 1, 1], "widths": [64, 32, 64, 128], "ratios": [0.5] * 4},
                  "heads": [{"shared": [32], "cls": [32], "reg": [32]}] * 3}


def anynet_model(arch: dict[str, Any], num_classes: int, seed: int) -> tuple[Any, torch.nn.Module]:
    """An AnyNet architecture from its JSON form and its seeded network."""
    from prednas.spaces.anynet import build, make_arch

    parsed = make_arch(arch["depths"], arch["widths"], arch["ratios"], arch["groups"])
    return parsed, build_seeded(lambda: build(parsed, num_classes), seed)


def _macs(model: torch.nn.Module, resolution: int) -> int:
    from prednas.models.counting import count_cost

    return int(count_cost(model, resolution)["macs"])


def _train(arch: dict[str, Any], data: ClassificationData, recipe: ClassificationRecipe, runtime: Runtime,
           checkpointer: Checkpointer | None = None, on_epoch: Any = None) -> TrainResult:
    _, model = anynet_model(arch, data.num_classes, recipe.seed)
    return train_classifier(model, data, recipe, runtime, checkpointer, on_epoch)


def classifier(data_path: str, recipe: ClassificationRecipe, runtime: Runtime, *, fraction: float = 1.0,
               arch: dict[str, Any] | None = None, on_epoch: Any = None) -> dict[str, Any]:
    """Train the RegNetX-200MF-shaped AnyNet (or ``arch``) on an ``.npz`` dataset and report the run."""
    arch = arch or REGNETX_200MF
    data = load_classification_data(DataSpec("npz", data_path, fraction=fraction))
    result = _train(arch, data, recipe, runtime, on_epoch=on_epoch)
    _, model = anynet_model(arch, data.num_classes, recipe.seed)
    resolution = recipe.resolved_resolution(data)
    return {"arch": arch, "recipe": asdict(recipe), "resolution": resolution, "fraction": fraction,
            "train_images": len(data.train),
            "val_images": len(data.val), "macs": _macs(model, resolution),
            "params": sum(p.numel() for p in model.parameters()), "top1": result.top1, "top5": result.top5,
            "epochs": result.history, "images_per_s": result.images_per_s, "epoch_s": result.epoch_s,
            "wall_s": result.wall_s, "threads": torch.get_num_threads(), "device": runtime.torch_device().type}


def sample_archs(count: int, seed: int, max_macs: float) -> list[dict[str, Any]]:
    """``count`` AnyNet architectures drawn from Table III's range with MACs (224 px) at most ``max_macs``."""
    from prednas.spaces.anynet import AnyNetSpace

    space, rng, out = AnyNetSpace(), np.random.default_rng(seed), []
    while len(out) < count:
        arch = space.sample(rng)
        if space.cost(arch)["macs"] <= max_macs:
            out.append(space.to_dict(arch))
    return out


def fidelity(data_path: str, recipe: ClassificationRecipe, runtime: Runtime, *, archs: int = 8, short: int = 2,
             long: int = 10, fraction: float = 1.0, seed: int = 0, max_macs: float = 400e6,
             progress: Any = None) -> dict[str, Any]:
    """Short-proxy vs longer-training top-1 of seeded random AnyNets, and their Kendall tau."""
    from scipy.stats import kendalltau, spearmanr

    data = load_classification_data(DataSpec("npz", data_path, fraction=fraction))
    rows = []
    for i, arch in enumerate(sample_archs(archs, seed, max_macs)):
        row: dict[str, Any] = {"arch": arch}
        for name, epochs in (("short", short), ("long", long)):
            result = _train(arch, data, replace(recipe, epochs=epochs), runtime)
            row[name], row[f"{name}_s"] = result.top1, result.wall_s
        _, model = anynet_model(arch, data.num_classes, recipe.seed)
        row["macs"] = _macs(model, recipe.resolved_resolution(data))
        rows.append(row)
        if progress is not None:
            progress(i, row)
    tau = kendalltau([r["short"] for r in rows], [r["long"] for r in rows])
    rho = spearmanr([r["short"] for r in rows], [r["long"] for r in rows])
    return {"rows": rows, "kendall_tau": float(tau.statistic), "p_value": float(tau.pvalue),
            "spearman": float(rho.statistic), "short": short, "long": long, "fraction": fraction, "seed": seed,
            "max_macs": max_macs, "recipe": asdict(recipe), "train_images": len(data.train),
            "threads": torch.get_num_threads()}


def _killed_run(data_path: str, fraction: float, recipe: ClassificationRecipe, folder: str, kill_after: int,
                threads: int) -> None:
    """Child process: train with checkpoints and SIGKILL itself right after epoch ``kill_after``."""
    torch.set_num_threads(threads)

    def hook(stats: dict[str, float]) -> None:
        if stats["epoch"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    data = load_classification_data(DataSpec("npz", data_path, fraction=fraction))
    _train(REGNETX_200MF, data, recipe, Runtime(device="cpu"), Checkpointer("resume-bench", folder), hook)


def resume(data_path: str, recipe: ClassificationRecipe, *, kill_after: int = 2, fraction: float = 1.0) -> dict:
    """Uninterrupted run vs a run killed after ``kill_after`` epochs and restarted (CPU)."""
    runtime = Runtime(device="cpu")
    data = load_classification_data(DataSpec("npz", data_path, fraction=fraction))
    straight = _train(REGNETX_200MF, data, recipe, runtime)
    with tempfile.TemporaryDirectory() as folder:
        context = multiprocessing.get_context("spawn")
        child = context.Process(target=_killed_run, args=(data_path, fraction, recipe, folder, kill_after,
                                                          torch.get_num_threads()))
        start = time.perf_counter()
        child.start()
        child.join()
        killed_s = time.perf_counter() - start
        rerun = _train(REGNETX_200MF, data, recipe, runtime, Checkpointer("resume-bench", folder))
    return {"epochs": recipe.epochs, "kill_after": kill_after, "exit_code": child.exitcode,
            "straight_top1": straight.top1, "straight_s": straight.wall_s, "killed_s": killed_s,
            "resumed_from": rerun.resumed_from, "rerun_top1": rerun.top1, "rerun_s": rerun.wall_s,
            "same_history": [h["loss"] for h in straight.history] == [h["loss"] for h in rerun.history],
            "fraction": fraction, "recipe": asdict(recipe), "threads": torch.get_num_threads()}


def shard_concurrency(data_path: str, *, archs: int = 8, concurrency: tuple[int, ...] = (1, 2), device: str = "auto",
                      epochs: int = 1, fraction: float = 0.2, batch_size: int = 128, seed: int = 0,
                      max_macs: float = 400e6, progress: Any = None) -> dict[str, Any]:
    """Wall time of a shard of ``archs`` AnyNets measured ``c`` at a time, for each ``c`` in ``concurrency``.

    Every level trains the same seeded architectures with the same evaluator config through
    ``evaluate_many``, as an evaluate step does, with a fresh checkpoint folder (so nothing
    resumes) and latency off (it is measured afterwards, one network at a time, whatever
    the concurrency). ``speedup`` is the first level's wall time over this one's; ``max_top1_diff``
    the largest top-1 difference from the first level, architecture by architecture (zero on
    CPU when every training gets the same number of threads).
    """
    from prednas.evaluators.registry import make_evaluator
    from prednas.evaluators.training import evaluate_many

    if not concurrency or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in concurrency):
        raise PredNASError(f"concurrency levels must be integers >= 1, got {list(concurrency)!r}")
    if archs < 1:
        raise PredNASError(f"archs must be >= 1, got {archs}")
    drawn = sample_archs(archs, seed, max_macs)
    config = {"name": "classification", "data": {"source": "npz", "path": data_path, "fraction": fraction},
              "recipe": {"epochs": epochs, "batch_size": batch_size, "seed": seed}, "device": device,
              "latency": False}
    rows: list[dict[str, Any]] = []
    for level in concurrency:
        evaluator = make_evaluator({**config, "concurrency": level})
        space = evaluator.space
        parsed = [space.from_dict(a) for a in drawn]
        with tempfile.TemporaryDirectory() as folder:
            evaluator.attach(checkpoint_dir=folder)
            start = time.perf_counter()
            results = evaluate_many(evaluator, space, parsed)
            wall = time.perf_counter() - start
        top1 = [r.accuracy for r in results]
        row = {"concurrency": level, "workers": min(level, archs), "wall_s": wall, "top1": top1,
               "resumed": sum(int(r.report["resumed_from"]) for r in results)}
        if rows:
            row["speedup"] = rows[0]["wall_s"] / wall
            row["max_top1_diff"] = max(abs(a - b) for a, b in zip(top1, rows[0]["top1"], strict=True))
        else:
            row["speedup"], row["max_top1_diff"] = 1.0, 0.0
        rows.append(row)
        if progress is not None:
            progress(row)
    runtime = evaluator.runtime
    return {"archs": drawn, "rows": rows, "epochs": epochs, "fraction": fraction, "batch_size": batch_size,
            "seed": seed, "max_macs": max_macs, "resolution": space.input_size,
            "macs": [space.cost(a)["macs"] for a in parsed], "train_images": len(evaluator.data.train),
            "device": runtime.torch_device().type, "precision": runtime.precision, "threads": torch.get_num_threads(),
            "torch": torch.__version__}


class _Reached(Exception):
    pass


def detection_overfit(coco_root: str, recipe: Any, runtime: Runtime, *, images: int = 8, target_ap50: float = 0.5,
                      arch: dict[str, Any] | None = None, progress: Any = None) -> dict[str, Any]:
    """Train a small detector on ``images`` COCO images and score it on the same ones until AP50 >= target."""
    from prednas.spaces.yolox import build, from_dict
    from prednas.train.coco import CocoSpec, load_coco
    from prednas.train.detection import train_detector

    arch = arch or SMALL_DETECTOR
    root = Path(coco_root)
    annotations = str(root / "annotations" / "instances_train.json")
    train, val = load_coco(CocoSpec(annotations, str(root / "images"), annotations, max_train_images=images,
                                    max_val_images=images))
    model = build_seeded(lambda: build(from_dict(arch), train.num_classes), recipe.seed)
    history: list[dict[str, float]] = []

    def watch(stats: dict[str, float]) -> None:
        history.append(stats)
        if progress is not None:
            progress(stats)
        if stats.get("val_ap50", 0.0) >= target_ap50:
            raise _Reached

    start = time.perf_counter()
    try:
        train_detector(model, train, val, recipe, runtime, on_epoch=watch)
    except _Reached:
        pass
    evaluated = [h for h in history if "val_ap50" in h]
    best = max(evaluated, key=lambda h: h["val_ap50"]) if evaluated else {}
    iterations = np.cumsum([h["iterations"] for h in history]).tolist()
    reached = next((it for it, h in zip(iterations, history, strict=True) if h.get("val_ap50", 0) >= target_ap50),
                   None)
    return {"arch": arch, "recipe": asdict(recipe), "images": images, "boxes": int(sum(len(r.boxes)
                                                                                   for r in train.records)),
            "target_ap50": target_ap50, "reached_at_iteration": reached,
            "max_iterations": recipe.epochs * max(1, len(train.records) // recipe.batch_size),
            "best": best, "history": history, "wall_s": time.perf_counter() - start,
            "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
            **runtime.describe(runtime.torch_device())}
