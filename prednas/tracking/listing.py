"""Past searches in a tracking store: one row per parent run (``prednas.kind=search``).

``prednas runs`` prints these rows; ``ui_url`` is the address of an experiment's runs view
in the MLflow UI's machine-learning mode (MLflow 3 opens in its GenAI mode otherwise).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from prednas.errors import PredNASError
from prednas.tracking import runs

ML_MODE = "workflowType=machine_learning"


@dataclass(frozen=True)
class SearchRow:
    """One past search as ``prednas runs`` shows it."""

    name: str
    experiment: str
    space: str
    best: float | None
    queries: int | None
    status: str
    started: str
    run_id: str
    run_key: str


def ui_url(base: str, experiment_id: str | None = None) -> str:
    """The MLflow UI's runs view of ``experiment_id`` (or its experiment list) in machine-learning mode."""
    base = base.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?{ML_MODE}"
    return f"{base}/#/experiments/{experiment_id}/runs?{ML_MODE}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of one run."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def past_searches(tracking_uri: str, *, experiment: str | None = None, limit: int = 50) -> list[SearchRow]:
    """The newest ``limit`` searches (parent runs) in the store, across experiments unless one is named."""
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise PredNASError("listing runs needs mlflow: pip install 'prednas[tracking]'") from None
    from prednas.tracking.tracker import probe

    probe(tracking_uri)  # an unreachable server fails here in one line, not after MLflow's retries
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        experiments = {e.experiment_id: e.name for e in client.search_experiments()}
        if experiment is not None:
            experiments = {i: n for i, n in experiments.items() if n == experiment}
            if not experiments:
                raise PredNASError(f"no experiment {experiment!r} at {tracking_uri}")
        if not experiments:
            return []
        found = client.search_runs(list(experiments), f"tags.`{runs.TAG_KIND}` = '{runs.KIND_SEARCH}'",
                                   max_results=limit, order_by=["attributes.start_time DESC"])
    except MlflowException as exc:
        raise PredNASError(f"MLflow at {tracking_uri} failed to list runs: {exc.message.splitlines()[0]}") from None
    return [_row(run, experiments.get(run.info.experiment_id, "?")) for run in found]


def _row(run: Any, experiment: str) -> SearchRow:
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    best = metrics.get("best_accuracy")
    queries = metrics.get("queries")
    started = dt.datetime.fromtimestamp(run.info.start_time / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")
    return SearchRow(name=run.info.run_name or run.info.run_id, experiment=experiment,
                     space=tags.get(runs.TAG_SPACE) or params.get("space", "?"), best=best,
                     queries=int(queries) if queries is not None else None, status=run.info.status,
                     started=started, run_id=run.info.run_id, run_key=tags.get(runs.TAG_RUN_KEY, ""))
