"""The search context every step after ``sample`` receives: the validated spec and the run.

``sample`` validates the pipeline's parameters once and hands the result downstream as one
JSON object, so later steps need no long parameter lists and all read the same values.
The context also resolves the evaluators (and their space instance) per stage.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prednas.errors import PredNASError, SettingError
from prednas.evaluators.base import config_hash
from prednas.pipeline.config import SearchSpec
from prednas.pipeline.exchange import RunRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchContext:
    """One pipeline run: its spec, run key, MLflow parent run and start time."""

    spec: SearchSpec
    run_key: str
    parent_run_id: str
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form passed between steps."""
        return {"spec": self.spec.to_arguments(), "run_key": self.run_key, "parent_run_id": self.parent_run_id,
                "started_at": self.started_at}

    @classmethod
    def from_dict(cls, data: Any) -> SearchContext:
        """Parse the JSON form (re-validating the spec)."""
        if not isinstance(data, dict) or not {"spec", "run_key", "parent_run_id", "started_at"} <= set(data):
            raise PredNASError(f"malformed search context {str(data)[:80]!r}; expected the output of the sample step")
        return cls(SearchSpec.from_arguments(data["spec"]), str(data["run_key"]), str(data["parent_run_id"]),
                   float(data["started_at"]))

    def write(self, path: str | Path) -> None:
        """Save the JSON form (the ``context`` artifact of the sample step)."""
        Path(path).write_text(json.dumps(self.to_dict(), sort_keys=True, indent=1) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> SearchContext:
        """Load what ``write`` saved."""
        from prednas.pipeline.exchange import read_json

        return cls.from_dict(read_json(path))

    @property
    def run(self) -> RunRef:
        """Where this search writes."""
        return RunRef(self.spec.store_uri, self.spec.tracking_uri, self.spec.experiment, self.parent_run_id)


def build_evaluator(config: dict[str, Any], accelerator: str = "", *, cuda: bool | None = None) -> Any:
    """The evaluator of a config; a step given an accelerator that CUDA sees trains there.

    The config's own ``device`` wins. Without one, a step that requested an accelerator
    runs on ``cuda`` when CUDA is available and on the CPU with a warning when it is not:
    the local runner ignores resource requests, and a node whose GPU is not visible should
    still finish its shard (slower) rather than fail it. ``device: cuda`` in the config
    makes a missing GPU an error instead.
    """
    from prednas.evaluators.registry import evaluator_options

    entry, options = evaluator_options(config)
    factory = entry.factory()
    if accelerator and "device" not in options and "device" in inspect.signature(factory).parameters:
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available()
        if cuda:
            options["device"] = "cuda"
        else:
            log.warning("the step requested %s but CUDA is not available: training on the CPU", accelerator)
    return factory(**options)


def space_of(name: str, evaluator: Any) -> Any:
    """The space instance to search: the evaluator's own (e.g. with its class count) when it has one."""
    from prednas.spaces import get_space

    own = getattr(evaluator, "space", None)
    return own if own is not None and getattr(own, "name", None) == name else get_space(name)


@dataclass
class Stage:
    """The evaluator of one stage with its space and config hash."""

    evaluator: Any
    space: Any
    config: dict[str, Any]
    hash: str


def stage(spec: SearchSpec, name: str, accelerator: str = "") -> Stage:
    """Build the evaluator, space and hashed config of the ``sample``, ``top-k`` or ``final`` stage.

    The final stage's config carries ``stage: final``, so its trials are stored apart from
    the top-K stage's even under the same recipe: a retrain, never a lookup of that result.
    """
    evaluator = build_evaluator(spec.stage_evaluators[name], accelerator)
    config = {**evaluator.config(), **({"stage": "final"} if name == "final" else {})}
    try:
        space = space_of(spec.space, evaluator)
    except SettingError as exc:  # a setting only the data shows to be wrong (images below the cost model's size)
        key = next((k for k, stages in spec.evaluator_keys().items() if name in stages), "evaluator")
        raise PredNASError(f"{key}.{exc.key}: {exc.detail} (the {name} stage's evaluator)") from None
    return Stage(evaluator, space, config, config_hash(config))
