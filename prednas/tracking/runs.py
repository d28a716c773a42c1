"""How a measured triplet appears in MLflow: one child run with fixed tag, param and metric names.

Every evaluated architecture is a child run of the search's parent run, tagged so the UI
can filter and chart across children and runs:

- tags: ``prednas.kind=evaluation``, ``prednas.stage`` (sample / top-k / final),
  ``prednas.evaluator`` (the evaluator's name), ``prednas.space``, ``prednas.arch_id``,
  ``prednas.trial``, ``prednas.config_hash``, ``mlflow.parentRunId``; the parent's
  ``prednas.run_key`` and ``prednas.seed`` (so "Group by" in the runs view tells searches
  apart); and ``prednas.source_run`` when the triplet was measured by another run (a warm start);
- run name: the architecture in a few words (``naming.child_name``: NB201's string, a size
  summary for AnyNet and YOLOX);
- params: ``arch`` (the architecture JSON), ``arch_id``, ``trial``, ``config_hash``,
  ``evaluator`` (the config JSON);
- metrics: ``accuracy``, each cost by its own name (``macs``, ``flops``, ``params``,
  ``latency_ms`` when measured) and each report value by its own name (``test_accuracy``),
  prefixed ``report.`` only if it would collide with a cost name.

(arch_id, stage, trial) identify a child, so logging the same triplet again finds the run
instead of creating a duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prednas.store.triplet import Triplet, canonical_json

TAG_KIND = "prednas.kind"
TAG_STAGE = "prednas.stage"
TAG_EVALUATOR = "prednas.evaluator"
TAG_SPACE = "prednas.space"
TAG_ARCH_ID = "prednas.arch_id"
TAG_TRIAL = "prednas.trial"
TAG_CONFIG = "prednas.config_hash"
TAG_SOURCE_RUN = "prednas.source_run"
TAG_RUN_KEY = "prednas.run_key"
TAG_SEED = "prednas.seed"
INHERITED = (TAG_RUN_KEY, TAG_SEED)  # parent tags every child carries too
TAG_BEST_ARCH = "prednas.best_arch"  # on the parent: the chosen architecture (``arch_text``)
TAG_BEST_ARCH_ID = "prednas.best_arch_id"
TAG_BEST_CHILD = "prednas.best_child_run_id"  # the child run that measured it
TAG_LIMIT = 5000  # kept inside MLflow's tag value limit
TAG_ROUND = "prednas.round"  # top-K stage children: the round (1..R) that proposed them
TAG_PARENT = "mlflow.parentRunId"
KIND_SEARCH = "search"
KIND_EVALUATION = "evaluation"
PARAM_LIMIT = 6000  # MLflow's maximum param value length


def evaluator_name(config: Mapping[str, Any]) -> str:
    """The evaluator's name from its config (``evaluator`` or ``name``), else 'unknown'."""
    return str(config.get("evaluator") or config.get("name") or "unknown")


def child_identity(triplet: Triplet) -> tuple[str, str, str]:
    """What makes a child run unique within its parent."""
    return triplet.arch_id, triplet.stage, triplet.trial


def child_tags(parent_run_id: str, triplet: Triplet) -> dict[str, str]:
    """Tags of the child run of ``triplet``."""
    tags = {TAG_KIND: KIND_EVALUATION, TAG_STAGE: triplet.stage, TAG_EVALUATOR: evaluator_name(triplet.evaluator),
            TAG_SPACE: triplet.space, TAG_ARCH_ID: triplet.arch_id, TAG_TRIAL: triplet.trial,
            TAG_CONFIG: triplet.config_hash, TAG_PARENT: parent_run_id}
    if triplet.run_id and triplet.run_id != parent_run_id:
        tags[TAG_SOURCE_RUN] = triplet.run_id
    return tags


def child_run_name(triplet: Triplet) -> str:
    """The child run's name: the architecture in a few words."""
    from prednas.tracking.naming import child_name

    return child_name(triplet.arch, triplet.cost)


def arch_text(arch: Mapping[str, Any]) -> str:
    """An architecture as text: NB201's own string, else its canonical JSON."""
    return arch["arch"] if set(arch) == {"arch"} and isinstance(arch["arch"], str) else canonical_json(arch)


def child_params(triplet: Triplet) -> dict[str, str]:
    """Params of the child run (long JSON is cut to MLflow's limit; see ``needs_arch_artifact``)."""
    return {"arch": clip(canonical_json(triplet.arch)), "arch_id": triplet.arch_id, "trial": triplet.trial,
            "config_hash": triplet.config_hash, "evaluator": clip(canonical_json(triplet.evaluator))}


def needs_arch_artifact(triplet: Triplet) -> bool:
    """Whether the architecture JSON is too long for a param and goes to ``arch.json`` as well."""
    return len(canonical_json(triplet.arch)) > PARAM_LIMIT


def child_metrics(triplet: Triplet) -> dict[str, float]:
    """Metrics of the child run: accuracy, costs, report values."""
    metrics = {"accuracy": triplet.accuracy, **triplet.cost}
    metrics.update({k if k not in metrics else f"report.{k}": v for k, v in triplet.report.items()})
    return metrics


def clip(text: str, limit: int = PARAM_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dicts as dotted param names with string values (lists as JSON)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = clip(json.dumps(list(value), default=str))
        else:
            flat[name] = clip(str(value))
    return flat


def quote(value: str) -> str:
    """A string literal for an MLflow search filter."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def children_filter(parent_run_id: str, triplet: Triplet | None = None) -> str:
    """Search filter for the evaluation children of a parent (or the one child of ``triplet``)."""
    terms = [f"tags.`{TAG_PARENT}` = {quote(parent_run_id)}", f"tags.`{TAG_KIND}` = {quote(KIND_EVALUATION)}"]
    if triplet is not None:
        terms += [f"tags.`{TAG_ARCH_ID}` = {quote(triplet.arch_id)}", f"tags.`{TAG_STAGE}` = {quote(triplet.stage)}",
                  f"tags.`{TAG_TRIAL}` = {quote(triplet.trial)}"]
    return " and ".join(terms)


def identity_of(run: Any) -> tuple[str, str, str]:
    """(arch_id, stage, trial) of a child run, from its tags."""
    tags = run.data.tags
    return tags.get(TAG_ARCH_ID, ""), tags.get(TAG_STAGE, ""), tags.get(TAG_TRIAL, "")
