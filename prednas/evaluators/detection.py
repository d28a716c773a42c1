"""Detection proxy evaluator: train a YOLOX-space detector on COCO-format data, report COCO AP.

The paper measures each sampled YOLOX-space detector by training it "following [YOLOX],
but using 6% train data" and reads COCO AP on val2017 (Sec. IV-C, Table VI). The data
(``train_annotations``, ``train_images``, ``val_annotations``, ``val_images``, ``fraction``;
relative paths resolve against ``root``), the recipe (``prednas.train.detection``) and the
device are options. ``accuracy`` is AP@[.5:.95] in percent (or AP50 with ``signal: ap50``);
``report`` holds AP50/AP75/AP small/medium/large (percent), wall time, iterations and
images per second; ``cost`` is the space's analytic cost plus the measured latency.
``space`` has the data's categories and costs at the training size (or ``cost_input_size``);
``config()`` leaves the device out, as in ``prednas.evaluators.classification``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluation
from prednas.evaluators.registry import check_concurrency
from prednas.evaluators.training import (
    CheckpointingMixin,
    build_network,
    check_input_size,
    network_latency,
    runtime_from,
)
from prednas.spaces.yolox import INPUT_SIZES
from prednas.train.coco import CocoSpec, CocoSplit, check_coco, load_coco
from prednas.train.detection import DetectionRecipe, train_detector

SIGNALS: tuple[str, ...] = ("ap", "ap50")
_PATHS = ("train_annotations", "train_images", "val_annotations", "val_images")


def coco_spec(data: Any) -> CocoSpec:
    """A ``CocoSpec`` from a mapping; relative paths are joined to its optional ``root``."""
    if isinstance(data, CocoSpec):
        return data
    if not isinstance(data, dict):
        raise PredNASError(f"detection data must be a mapping of paths, got {data!r}")
    from prednas.train.classification import from_mapping

    values = dict(data)
    root = values.pop("root", None)
    if root is not None:
        for key in _PATHS:
            if values.get(key) is not None:
                values[key] = str(Path(root) / values[key])
    missing = [k for k in ("train_annotations", "train_images", "val_annotations") if not values.get(k)]
    if missing:
        raise PredNASError(f"detection data lacks {missing[0]!r}; expected train_annotations, train_images, "
                           f"val_annotations and optionally val_images, root, fraction")
    return from_mapping(CocoSpec, values, "detection data")


class DetectionEvaluator(CheckpointingMixin):
    """Trains each detector with one recipe on one COCO-format dataset and reports its AP."""

    name = "detection"
    _cached = ("_splits",)

    def __init__(self, data: dict[str, Any] | CocoSpec, recipe: dict[str, Any] | DetectionRecipe | None = None,
                 device: str = "auto", precision: str = "auto", workers: int | None = None, latency: bool = True,
                 cost_input_size: int | None = None, signal: str = "ap", concurrency: int = 1) -> None:
        self.data_spec = coco_spec(data)
        self.recipe = recipe if isinstance(recipe, DetectionRecipe) else DetectionRecipe.from_dict(recipe or {})
        self.runtime = runtime_from(device, precision, workers)
        if signal not in SIGNALS:
            raise PredNASError(f"unknown detection signal {signal!r}; expected one of: {', '.join(SIGNALS)}")
        self.latency, self.signal, self.cost_input_size = latency, signal, cost_input_size
        if cost_input_size is not None:
            check_input_size("yolox", cost_input_size, INPUT_SIZES)
        self.concurrency = check_concurrency(concurrency)
        self._splits: tuple[CocoSplit, CocoSplit] | None = None

    def config(self) -> dict[str, Any]:
        """Data, recipe, signal, requested precision and cost input size (not the device: see the module)."""
        return {"evaluator": self.name, "data": self.data_spec.config(), "recipe": asdict(self.recipe),
                "signal": self.signal, "precision": self.runtime.precision, "cost_input_size": self.cost_input_size}

    def check(self) -> None:
        """Check the data without indexing it (annotation files are COCO, the image folders exist)."""
        check_coco(self.data_spec)

    @property
    def space(self) -> Any:
        """The YOLOX space with the data's categories and the cost input size (reads the annotations)."""
        from prednas.spaces.yolox import YOLOXSpace

        return YOLOXSpace(num_classes=self.splits[0].num_classes,
                          input_size=self.cost_input_size or self.recipe.input_size)

    @property
    def splits(self) -> tuple[CocoSplit, CocoSplit]:
        """The validated training and validation splits (read once, on first use)."""
        if self._splits is None:
            self._splits = load_coco(self.data_spec)
        return self._splits

    def latency_ms(self, space: Any, arch: Any, model: nn.Module | None = None) -> float:
        """Batch-1 inference latency of ``arch`` (or of its trained ``model``) on the evaluation device."""
        model = model if model is not None else build_network(space, arch, self.splits[0].num_classes,
                                                              self.recipe.seed)
        size = getattr(space, "input_size", None) or self.recipe.input_size
        return network_latency(model, size, self.runtime, repeats=5)

    def evaluate(self, space: Any, arch: Any) -> Evaluation:
        """Train ``arch`` (resuming from its checkpoint if one exists) and score it with COCOeval."""
        train, val = self.splits
        model = build_network(space, arch, train.num_classes, self.recipe.seed)
        config = self.config()
        result = train_detector(model, train, val, self.recipe, self.runtime, self.checkpointer(space, arch, config))
        cost = {key: float(value) for key, value in space.cost(arch).items()}
        if self.latency:
            cost["latency_ms"] = self.latency_ms(space, arch, model)
        percent = {name: 100.0 * value if value >= 0 else value for name, value in result.metrics.items()}
        report = {**percent, "wall_s": result.wall_s, "train_s": result.train_s,
                  "iterations_per_s": result.iterations_per_s, "images_per_s": result.images_per_s,
                  "epochs": float(result.epochs), "resumed_from": float(result.resumed_from),
                  "skipped_images": float(result.skipped)}
        return Evaluation(accuracy=percent[self.signal], cost=cost, report=report)
