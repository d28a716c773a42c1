"""Options shared by the commands that take a search config (run, compile, submit, schedule, bench)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

# (option, config key, type, help) for the settings worth a flag of their own; ``--set`` reaches the rest.
_SHORTCUTS: tuple[tuple[str, str, Any, str], ...] = (
    ("--space", "space", str, "Search space (nb201, natssss, anynet, yolox)."),
    ("--n", "n", int, "Random architectures measured to fit the predictors."),
    ("--k", "k", int, "Architectures from the search pool measured after."),
    ("--seed", "seed", int, "Seed of every random draw of the search."),
    ("--shards", "shards", int, "Evaluate steps per stage."),
    ("--parallelism", "parallelism", int, "Evaluate steps running at once."),
    ("--tracking-uri", "tracking_uri", str,
     "MLflow tracking URI (default: runs/mlflow.db locally, the in-cluster MLflow when sent to a cluster)."),
    ("--artifact-store", "store_uri", str, "Triplet store: a directory or s3://bucket/prefix (default: runs/store "
     "locally, the ConfigMap prednas-s3's PREDNAS_STORE_URI on a cluster)."),
    ("--experiment", "experiment", str, "MLflow experiment (and Kubeflow experiment when submitting)."),
    ("--run-name", "run_name", str, "Name of the run."),
)


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--config``, ``--set`` and the shortcut flags; the command receives ``spec_args``."""
    for flag, key, kind, text in reversed(_SHORTCUTS):
        command = click.option(flag, key, type=kind, default=None, help=text)(command)
    command = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="Override any config key, e.g. --set gradient.steps=100 (repeatable).")(command)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Search config YAML (default: pipelines/configs/nb201-cifar100.yaml).")(command)


def load_spec(kwargs: dict[str, Any]) -> Any:
    """Pop the config options from a command's kwargs and return the validated ``SearchSpec``."""
    from prednas.pipeline.config import load_config

    overrides = list(kwargs.pop("overrides", ()))
    for _, key, _, _ in _SHORTCUTS:
        value = kwargs.pop(key, None)
        if value is not None:
            overrides.append(f"{key}={value}" if not isinstance(value, str) else f"{key}={_quoted(value)}")
    return load_config(kwargs.pop("config_path", None), overrides)


def _quoted(text: str) -> str:
    """A string as a YAML scalar that stays a string (``--run-name 123`` is the name '123')."""
    import json

    return json.dumps(text)
