"""The whole pipeline in one Python process: the same step functions, called in DAG order.

``prednas run --in-process`` and the NB201 benchmark's ``prednas`` methods run searches
through this function (the benchmark with ``tracking_uri: none`` and a ``memory://`` store).

This is the library way to run a search (and the baseline of the pipeline-overhead
benchmark): shards are evaluated one after another instead of in parallel steps, and
values are handed over in memory instead of through artifact files. The MLflow run is
closed as FAILED when a step raises, as the pipeline's exit handler does, and as KILLED on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import uuid
from typing import Any

from prednas.errors import PredNASError
from prednas.pipeline import report as reporting
from prednas.pipeline import steps
from prednas.pipeline.config import SearchSpec
from prednas.pipeline.interrupt import sigterm_as_interrupt


def run_inprocess(spec: SearchSpec, *, run_key: str | None = None) -> dict[str, Any]:
    """Run sample -> evaluate -> R x (fit -> search -> evaluate) -> select [-> evaluate best m -> select_final]."""
    if not spec.tracking_uri or not spec.store_uri:
        raise PredNASError("tracking_uri and store_uri must be set; resolve_embedded() gives the local defaults")
    key = run_key or f"inprocess-{uuid.uuid4().hex[:12]}"
    state = "FAILED"
    try:
        with sigterm_as_interrupt():
            result = _steps(spec, key)
        state = "SUCCEEDED"
        return result
    except KeyboardInterrupt:
        state = "CANCELLED"
        raise
    finally:
        steps.close(spec.tracking_uri, spec.experiment, key, state)


def _steps(spec: SearchSpec, key: str) -> dict[str, Any]:
    """The steps in DAG order; returns the last select step's report."""
    context, shards = steps.sample(spec, run_key=key)
    measured = [t for shard in shards for t in steps.evaluate(context, shard)[0]]
    search_state = None
    for _ in range(spec.rounds):
        fit = steps.fit_predictors(context, measured, search_state)
        search_state, round_shards = steps.search(context, fit["main"], fit["aux"], fit["state"], spec.rounds)
        measured = [t for shard in round_shards for t in steps.evaluate(context, shard)[0]]
    result = reporting.select(context, search_state, measured)
    finalists, final_shards = reporting.plan_final(context, search_state, measured)
    if final_shards:
        final = [t for shard in final_shards for t in steps.evaluate(context, shard)[0]]
        result = reporting.select_final(context, result, finalists, final)
    return result
