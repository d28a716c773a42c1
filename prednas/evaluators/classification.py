"""Classification proxy evaluator: train an architecture on image data, report top-1 (paper Sec. IV-B).

The paper measures each AnyNet sample by a 10-epoch ImageNet proxy training after RegNet
(Radosavovic et al. 2020); here the data, the recipe and the device are options, so the
same evaluator runs that proxy on an ImageNet folder, CIFAR-10/100 or NumPy arrays.
``accuracy`` is the top-1 accuracy (percent) on the validation split; ``cost`` is the
space's analytic cost plus the measured latency; ``report`` holds top-5, wall time,
training throughput and what a resume skipped.

``space`` is the AnyNet space as this evaluator measures it: the data's number of classes
and, for the analytic cost, the training resolution (or ``cost_input_size``), so a FLOPs
target on CIFAR means FLOPs at 32 x 32 with 10 classes. ``config()`` leaves the device
out: a step given an accelerator and one without it must agree on the triplet key; the
requested precision is in it (``auto`` is mixed precision on CUDA, fp32 on CPU).
"""

from __future__ import annotations

from dataclasses import asdict
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
from prednas.spaces.anynet import INPUT_SIZES
from prednas.train.classification import ClassificationRecipe, train_classifier
from prednas.train.data import ClassificationData, DataSpec, check_classification_data, load_classification_data

SIGNALS: tuple[str, ...] = ("top1", "top5")


def data_spec(data: Any) -> DataSpec:
    """A ``DataSpec`` from a mapping (``source``, ``path``, optional ``download``, ``fraction``, ...)."""
    if isinstance(data, DataSpec):
        return data
    if not isinstance(data, dict) or "source" not in data or "path" not in data:
        raise PredNASError(f"classification data must be a mapping with 'source' and 'path', got {data!r}")
    from prednas.train.classification import from_mapping

    return from_mapping(DataSpec, data, "classification data")


class ClassificationEvaluator(CheckpointingMixin):
    """Trains each architecture with one recipe on one dataset and reports its top-1 accuracy."""

    name = "classification"
    _cached = ("_data",)

    def __init__(self, data: dict[str, Any] | DataSpec, recipe: dict[str, Any] | ClassificationRecipe | None = None,
                 device: str = "auto", precision: str = "auto", workers: int | None = None, latency: bool = True,
                 cost_input_size: int | None = None, signal: str = "top1", concurrency: int = 1,
                 compile: bool = False) -> None:
        self.data_spec = data_spec(data)
        if not isinstance(recipe, ClassificationRecipe):
            recipe = ClassificationRecipe.from_dict(recipe or {})
        self.recipe = recipe
        self.runtime = runtime_from(device, precision, workers, compile)
        if signal not in SIGNALS:
            raise PredNASError(f"unknown classification signal {signal!r}; expected one of: {', '.join(SIGNALS)}")
        self.latency, self.signal, self.cost_input_size = latency, signal, cost_input_size
        if cost_input_size is not None:
            check_input_size("anynet", cost_input_size, INPUT_SIZES)
        elif recipe.resolution is not None:
            check_input_size("anynet", recipe.resolution, INPUT_SIZES, "recipe.resolution",
                             " (with no cost_input_size, also the cost's input size)")
        self.concurrency = check_concurrency(concurrency)
        self._data: ClassificationData | None = None

    def config(self) -> dict[str, Any]:
        """Data, recipe, signal, requested precision, cost input size and compile when on (not the device: see the
        module); compiled kernels round differently, so a compiled run is another config."""
        return {"evaluator": self.name, "data": self.data_spec.config(), "recipe": asdict(self.recipe),
                "signal": self.signal, "precision": self.runtime.precision, "cost_input_size": self.cost_input_size,
                **({"compile": True} if self.runtime.compile else {})}

    def check(self) -> None:
        """Check the data without loading it (the path exists and its first records parse)."""
        check_classification_data(self.data_spec)

    @property
    def space(self) -> Any:
        """The AnyNet space with the data's classes and the cost input size (loads the data)."""
        from prednas.spaces.anynet import AnyNetSpace

        size = self.cost_input_size or self.recipe.resolved_resolution(self.data)
        if self.cost_input_size is None and self.recipe.resolution is None:
            check_input_size("anynet", size, INPUT_SIZES, "cost_input_size",
                             f" (unset: the images' own size, from data.path {self.data_spec.path})")
        return AnyNetSpace(num_classes=self.data.num_classes, input_size=size)

    @property
    def data(self) -> ClassificationData:
        """The loaded data (read once, on first use)."""
        if self._data is None:
            self._data = load_classification_data(self.data_spec)
        return self._data

    def latency_ms(self, space: Any, arch: Any, model: nn.Module | None = None) -> float:
        """Batch-1 inference latency of ``arch`` (or of its trained ``model``) on the evaluation device."""
        data = self.data
        model = model if model is not None else build_network(space, arch, data.num_classes, self.recipe.seed)
        size = getattr(space, "input_size", None) or self.recipe.resolved_resolution(data)
        return network_latency(model, size, self.runtime)

    def evaluate(self, space: Any, arch: Any) -> Evaluation:
        """Train ``arch`` (resuming from its checkpoint if one exists) and measure it."""
        data = self.data
        model = build_network(space, arch, data.num_classes, self.recipe.seed)
        config = self.config()
        result = train_classifier(model, data, self.recipe, self.runtime, self.checkpointer(space, arch, config))
        cost = {key: float(value) for key, value in space.cost(arch).items()}
        if self.latency:
            cost["latency_ms"] = self.latency_ms(space, arch, model)
        report = {"top1": result.top1, "top5": result.top5, "wall_s": result.wall_s, "train_s": result.train_s,
                  "images_per_s": result.images_per_s, "epoch_s": result.epoch_s, "epochs": float(result.epochs),
                  "resumed_from": float(result.resumed_from), "skipped_images": float(result.skipped),
                  "train_loss": float(result.history[-1]["loss"]) if result.history else float("nan")}
        return Evaluation(accuracy=result.top1 if self.signal == "top1" else result.top5, cost=cost, report=report)
