"""Registry of evaluators: ``make_evaluator({"name": ..., **options})`` returns a ready one.

An entry names its factory by import path (``"module:attribute"``), so registering an
evaluator is one line and importing the registry loads no training code. The factory's
keyword arguments are the evaluator's options: a config key the factory does not accept,
or a missing required one, is reported in one line naming the accepted options.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluator


@dataclass(frozen=True)
class EvaluatorEntry:
    """How to build one evaluator and what the pipeline needs to know about it.

    ``spaces``: the search spaces it can measure (empty: any). ``trains``: whether an
    evaluation trains a network, so pipeline steps request an accelerator. ``claim_ttl_s``:
    how long an evaluation may take before another run may redo it (0: never claim, for
    evaluators cheap enough that a duplicate costs nothing). ``options``: the factory
    arguments a config may set (empty: every keyword argument).
    """

    name: str
    target: str
    spaces: tuple[str, ...] = ()
    trains: bool = False
    claim_ttl_s: float = 0.0
    options: tuple[str, ...] = ()

    def factory(self) -> Any:
        """The callable behind ``target``, imported on first use."""
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


_ENTRIES: dict[str, EvaluatorEntry] = {}


def register_evaluator(name: str, target: str, *, spaces: tuple[str, ...] = (), trains: bool = False,
                       claim_ttl_s: float = 0.0, options: tuple[str, ...] = ()) -> None:
    """Register the evaluator factory at import path ``target`` (``"module:attribute"``) as ``name``."""
    _ENTRIES[name] = EvaluatorEntry(name, target, tuple(spaces), trains, claim_ttl_s, tuple(options))


def evaluator_names() -> list[str]:
    """Names of every registered evaluator, sorted."""
    return sorted(_ENTRIES)


def evaluator_entry(name: Any) -> EvaluatorEntry:
    """The registry entry called ``name``; an unknown name lists the known ones."""
    if not isinstance(name, str) or name not in _ENTRIES:
        raise PredNASError(f"unknown evaluator {name!r}; expected one of: {', '.join(evaluator_names())}")
    return _ENTRIES[name]


def evaluator_options(config: Mapping[str, Any]) -> tuple[EvaluatorEntry, dict[str, Any]]:
    """Split an evaluator config into its entry and checked options (without building it)."""
    if not isinstance(config, Mapping):
        raise PredNASError(f"evaluator config must be a mapping with a 'name', got {config!r}")
    options = dict(config)
    entry = evaluator_entry(options.pop("name", None))
    parameters = inspect.signature(entry.factory()).parameters
    accepted = [p for p, spec in parameters.items() if spec.kind in (spec.KEYWORD_ONLY, spec.POSITIONAL_OR_KEYWORD)
                and (not entry.options or p in entry.options)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise PredNASError(f"unknown option {unknown[0]!r} for evaluator {entry.name!r}; "
                           f"expected some of: {', '.join(accepted) or 'none'}")
    missing = [p for p in accepted if parameters[p].default is inspect.Parameter.empty and p not in options]
    if missing:
        raise PredNASError(f"evaluator {entry.name!r} needs option {missing[0]!r}")
    if "concurrency" in options:
        check_concurrency(options["concurrency"])
    return entry, options


def check_concurrency(value: Any) -> int:
    """``evaluator.concurrency``: how many architectures of a shard train at once (an integer >= 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PredNASError(f"evaluator concurrency={value!r} is out of range; expected an integer >= 1")
    return value


def make_evaluator(config: Mapping[str, Any]) -> Evaluator:
    """Build the evaluator that ``config`` names (``{"name": "nb201-table", "dataset": "cifar100"}``)."""
    entry, options = evaluator_options(config)
    return entry.factory()(**options)


def check_space(entry: EvaluatorEntry, space: str) -> None:
    """Refuse a space the evaluator cannot measure."""
    if entry.spaces and space not in entry.spaces:
        raise PredNASError(f"evaluator {entry.name!r} measures space {', '.join(entry.spaces)}, not {space!r}")


register_evaluator("nb201-table", "prednas.evaluators.nb201_table:NB201TableEvaluator", spaces=("nb201",),
                   options=("dataset", "signal"))
register_evaluator("natssss-table", "prednas.evaluators.natssss_table:NatsSssTableEvaluator", spaces=("natssss",),
                   options=("dataset", "signal"))
register_evaluator("classification", "prednas.evaluators.classification:ClassificationEvaluator", spaces=("anynet",),
                   trains=True, claim_ttl_s=6 * 3600.0)
register_evaluator("detection", "prednas.evaluators.detection:DetectionEvaluator", spaces=("yolox",),
                   trains=True, claim_ttl_s=12 * 3600.0)
