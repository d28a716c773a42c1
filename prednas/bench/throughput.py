"""Training throughput: the model step alone against the product's training loop, per workload and precision.

The *model step* is one optimisation step of the product's training state (its SGD,
schedule, gradient scaler and, for detectors, EMA; ``training_state``) on a synthetic
batch that already lives on the device, in the run's layout and autocast: forward, a
plain loss (cross-entropy for a classifier, the mean of the raw outputs for a detector),
backward, step. The *loop* is ``train_classifier`` / ``train_detector`` themselves on real
data with the default recipe (augmentation, SimOTA, mosaic, EMA), on as many images as
one timed block of steps sees, for ``1 + repeats`` epochs: the first pays for start-up,
loader workers and kernel selection and is not counted. Both figures are the fastest of
their ``repeats`` blocks (epochs), as ``timeit`` reports its best, so that a machine
shared with other work measures the code rather than the neighbours. Their ratio is
what data handling, augmentation and label assignment cost the run.

Workloads (data, not code): the RegNetX-200MF-shaped AnyNet on cifar10_mini at 32 px
and (resized on the device) at 224 px, YOLOX-S at 640 px and YOLOX-Tiny at 416 px on
coco_mini. Batch sizes differ by device so that a CPU run takes minutes, not hours.

``compile`` runs the classifier workloads' forward through ``torch.compile`` in both the
step and the loop (the detectors stay eager: their multi-scale inputs would recompile).
Each row's ``warmup_s`` is the model step's untimed first steps, which then hold the
compilation (the loop's model, of the same shapes, reuses the compiled code).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prednas.errors import PredNASError
from prednas.train.runtime import Runtime, autocast, build_seeded, synchronize

WORKLOADS: dict[str, dict[str, Any]] = {
    "anynet-32": {"kind": "classifier", "size": 32, "batch": {"cuda": 256, "cpu": 128}},
    "anynet-224": {"kind": "classifier", "size": 224, "batch": {"cuda": 256, "cpu": 16}},
    "yolox_s-640": {"kind": "detector", "preset": "yolox_s", "size": 640, "batch": {"cuda": 32, "cpu": 2}},
    "yolox_tiny-416": {"kind": "detector", "preset": "yolox_tiny", "size": 416, "batch": {"cuda": 32, "cpu": 4}},
}
DEFAULT_ITERATIONS = {"cuda": 20, "cpu": 3}
WARMUP_STEPS = 2


def _check(names: tuple[str, ...], known: Any, what: str) -> None:
    for name in names:
        if name not in known:
            raise PredNASError(f"unknown {what} {name!r}; expected some of: {', '.join(known)}")


def step_rate(run: Any, batch: torch.Tensor, loss_of: Any, *, iterations: int, repeats: int,
              warmup: int = WARMUP_STEPS, forward: Any = None) -> tuple[float, float]:
    """Images per second of ``run.step`` on a device-resident ``batch`` (the fastest of ``repeats`` timed
    blocks), and the seconds its ``warmup`` untimed steps took."""
    forward = run.model if forward is None else forward
    run.model.train()
    best = warmup_s = 0.0
    for block in range(-1, repeats):
        synchronize(run.device)
        start = time.perf_counter()
        for _ in range(warmup if block < 0 else iterations):
            with autocast(run.device, run.amp):
                outputs = forward(batch)
            run.step(loss_of(outputs))
        synchronize(run.device)
        if block >= 0:
            best = max(best, iterations * len(batch) / (time.perf_counter() - start))
        else:
            warmup_s = time.perf_counter() - start
    return best, warmup_s


def loop_rate(history: list[dict[str, float]]) -> float:
    """Images per second of the fastest epoch after the first (which pays for start-up)."""
    return max(h["images"] / h["seconds"] for h in history[1:])


def _synthetic(runtime: Runtime, model: nn.Module, batch: int, size: int) -> tuple[Any, torch.Tensor]:
    from prednas.train.engine import place

    device, amp, channels_last = place(model, runtime)
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return (device, amp), x


def classifier_rates(data: Any, runtime: Runtime, *, size: int, batch: int, iterations: int,
                     repeats: int) -> tuple[float, float, float]:
    """Model-step and loop images/s of the RegNetX-200MF-shaped AnyNet at ``size`` px; the step's warm-up (s)."""
    from prednas.bench.training import REGNETX_200MF, anynet_model
    from prednas.train.classification import ClassificationRecipe, train_classifier, training_state
    from prednas.train.data import ArraySplit, ClassificationData

    recipe = ClassificationRecipe(epochs=1 + repeats, batch_size=batch, resolution=size)
    _, model = anynet_model(REGNETX_200MF, data.num_classes, recipe.seed)
    (device, amp), x = _synthetic(runtime, model, batch, size)
    labels = torch.randint(0, data.num_classes, (batch,), device=device)
    run = training_state(model, recipe, iterations, torch.Generator(), device, amp)
    criterion = nn.CrossEntropyLoss()
    forward = torch.compile(model) if runtime.compile else model
    step, warmup_s = step_rate(run, x, lambda logits: criterion(logits, labels), iterations=iterations,
                               repeats=repeats, forward=forward)

    images = batch * iterations
    if images > len(data.train):
        raise PredNASError(f"{iterations} iterations of batch {batch} need {images} training images; "
                           f"the data has {len(data.train)}")
    train = ArraySplit(data.train.images[:images], data.train.labels[:images])
    val = ArraySplit(data.val.images[:batch], data.val.labels[:batch])
    subset = ClassificationData(train, val, data.classes, data.mean, data.std)
    _, model = anynet_model(REGNETX_200MF, data.num_classes, recipe.seed)
    return step, loop_rate(train_classifier(model, subset, recipe, runtime).history), warmup_s


def detector_rates(splits: Any, runtime: Runtime, *, preset: str, size: int, batch: int, iterations: int,
                   repeats: int) -> tuple[float, float, float]:
    """Model-step and loop images/s of a YOLOX preset at ``size`` px (the default recipe, mosaic on); the step's
    warm-up (s)."""
    from prednas.spaces.yolox import build
    from prednas.spaces.yolox import preset as arch_of
    from prednas.train.detection import DetectionRecipe, train_detector, training_state

    train, val = splits
    if batch > len(train.records):
        raise PredNASError(f"detector batch {batch} is larger than the {len(train.records)} training images")
    train = replace(train, records=train.records[:batch * iterations])
    recipe = DetectionRecipe(epochs=1 + repeats, batch_size=batch, input_size=size, warmup_epochs=1.0,
                             no_aug_epochs=0)
    model = build_seeded(lambda: build(arch_of(preset), train.num_classes), recipe.seed)
    (device, amp), x = _synthetic(runtime, model, batch, size)
    run = training_state(model, recipe, iterations, torch.Generator(), device, amp)
    step, warmup_s = step_rate(run, x, lambda outputs: sum(o.float().mean() for o in outputs),
                               iterations=iterations, repeats=repeats)

    model = build_seeded(lambda: build(arch_of(preset), train.num_classes), recipe.seed)
    return step, loop_rate(train_detector(model, train, val, recipe, runtime).history), warmup_s


def throughput(data_path: str, coco_root: str, device: str = "auto", *, workloads: tuple[str, ...] | None = None,
               precisions: tuple[str, ...] | None = None, iterations: int | None = None,
               batch_size: int | None = None, repeats: int = 3, compile: bool = False) -> dict[str, Any]:
    """Per workload and precision: model-step and loop images/s and their ratio (``rows``)."""
    from prednas.train.data import DataSpec, load_classification_data

    kind = Runtime(device=device).torch_device().type
    workloads = workloads or tuple(WORKLOADS)
    precisions = precisions or (("fp32", "auto") if kind == "cuda" else ("fp32",))
    _check(workloads, WORKLOADS, "workload")
    for precision in precisions:
        Runtime(device=device, precision=precision).torch_device()  # refuses fp16 on CPU before any training
    if iterations is None:
        iterations = DEFAULT_ITERATIONS.get(kind, DEFAULT_ITERATIONS["cpu"])
    for key, value, low in (("iterations", iterations, 1), ("repeats", repeats, 1), ("batch_size", batch_size, 2)):
        if value is not None and value < low:
            raise PredNASError(f"{key} must be >= {low}, got {value}")
    classes = [w for w in workloads if WORKLOADS[w]["kind"] == "classifier"]
    data = load_classification_data(DataSpec("npz", data_path)) if classes else None
    splits = _coco(coco_root) if len(classes) < len(workloads) else None
    rows = []
    for name in workloads:
        work = WORKLOADS[name]
        batch = batch_size or work["batch"].get(kind, work["batch"]["cpu"])
        for precision in precisions:
            compiled = compile and work["kind"] == "classifier"
            runtime = Runtime(device=device, precision=precision, compile=compiled)
            sizes = {"size": work["size"], "batch": batch, "iterations": iterations, "repeats": repeats}
            if work["kind"] == "classifier":
                step, loop, warmup_s = classifier_rates(data, runtime, **sizes)
            else:
                step, loop, warmup_s = detector_rates(splits, runtime, preset=work["preset"], **sizes)
            resolved = runtime.describe(runtime.torch_device())["precision"]
            rows.append({"workload": name, "precision": precision, "autocast": resolved, "batch": batch,
                         "compile": compiled, "step_images_per_s": step, "loop_images_per_s": loop,
                         "ratio": loop / step, "warmup_s": warmup_s})
    name = torch.cuda.get_device_name() if kind == "cuda" else "cpu"
    return {"device": name, "rows": rows, "iterations": iterations, "repeats": repeats,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def _coco(root: str) -> Any:
    from prednas.train.coco import CocoSpec, load_coco

    annotations = str(Path(root) / "annotations" / "instances_train.json")
    return load_coco(CocoSpec(annotations, str(Path(root) / "images"), annotations, max_val_images=2))
