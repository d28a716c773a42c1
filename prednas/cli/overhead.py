"""``prednas bench pipeline-overhead``: the local pipeline against the same search in-process."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from prednas.cli.options import config_options, load_spec
from prednas.errors import PredNASError


def register(main: click.Group, bench: click.Group) -> None:
    """Add the pipeline-overhead benchmark."""
    bench.add_command(pipeline_overhead)


@click.command("pipeline-overhead")
@config_options
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where both runs write (default: a temporary folder, removed after).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures as JSON.")
def pipeline_overhead(root: Path | None, json_path: Path | None, **kwargs: Any) -> None:
    """Wall time of `prednas run` (kfp.local) against the same steps called in-process."""
    from prednas.bench.pipeline import print_overhead, run_overhead

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # schema-creation chatter of a new SQLite store
    spec = load_spec(kwargs)
    if json_path is not None and not json_path.parent.exists():
        raise PredNASError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
    with tempfile.TemporaryDirectory(prefix="prednas-overhead-") as tmp:
        figures = run_overhead(spec, root or tmp)
    print_overhead(figures)
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
