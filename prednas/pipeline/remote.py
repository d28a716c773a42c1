"""Compile the pipeline, submit a run and schedule recurring runs on Kubeflow Pipelines (kfp.Client).

A submitted run gets every search parameter explicitly (the config's values), with the
in-cluster MLflow service and S3 store of ``manifests/`` where the config leaves the
tracking URI or store empty. Credentials never travel with the run: the KFP endpoint is
reached with kfp's own mechanisms (``KF_PIPELINES_SA_TOKEN_PATH``, kube context, a token
in ``KFP_EXISTING_TOKEN``), and steps read S3 credentials from the cluster's Secret.

Schedules use KFP's six-field cron (``second minute hour day-of-month month day-of-week``),
one concurrent run by default and no catch-up of runs missed while paused: a recurring
search warm-starts from the triplet store, so replaying missed slots adds nothing.
Scheduling is idempotent by name: an experiment's recurring run of that name is kept, so
a GitOps Job may register it on every sync.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from prednas.errors import PredNASError
from prednas.pipeline.config import SearchSpec

# KFP's cron fields with their ranges and names (robfig/cron with seconds).
_CRON_FIELDS = (("second", 0, 59, ()), ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
                ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
                ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")))


def cluster_spec(spec: SearchSpec) -> SearchSpec:
    """Fill an empty tracking URI or store with the in-cluster defaults of ``manifests/``."""
    from prednas.pipelines.prednas_pipeline import CLUSTER_STORE_URI, CLUSTER_TRACKING_URI

    return replace(spec, tracking_uri=spec.tracking_uri or CLUSTER_TRACKING_URI,
                   store_uri=spec.store_uri or CLUSTER_STORE_URI)


def check_cron(expression: str) -> str:
    """A six-field cron expression as KFP schedules it; anything else is one line naming the bad field."""
    fields = expression.split() if isinstance(expression, str) else []
    if len(fields) != 6:
        raise PredNASError(f"cron expression {expression!r} has {len(fields)} fields; KFP expects 6: "
                           "second minute hour day-of-month month day-of-week, e.g. '0 0 3 * * *'")
    for (name, low, high, names), value in zip(_CRON_FIELDS, fields, strict=True):
        if not all(_cron_part(part, low, high, names, wildcard="?" if name.startswith("day") else "")
                   for part in value.split(",")):
            raise PredNASError(f"bad {name} field {value!r} in cron expression {expression!r}; "
                               f"expected *, values {low}-{high}{', names' if names else ''}, ranges a-b, steps /n")
    return " ".join(fields)


def _cron_part(part: str, low: int, high: int, names: tuple[str, ...], wildcard: str) -> bool:
    """Whether one comma-separated item of a cron field is valid."""
    base, slash, step = part.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        return False
    if base in ("*", wildcard):
        return True
    bounds = base.split("-")
    values = [int(b) if b.isdigit() else (names.index(b.upper()) + (low if names else 0)
                                          if b.upper() in names else None) for b in bounds]
    return 1 <= len(values) <= 2 and all(v is not None and low <= v <= high for v in values) and \
        values == sorted(values)


def compile_package(spec: SearchSpec, path: str | Path) -> Path:
    """Write the pipeline package with ``spec``'s compile-time settings and, as defaults, its parameters."""
    from prednas.pipelines.prednas_pipeline import compile_pipeline

    spec = cluster_spec(spec)
    return compile_pipeline(path, parallelism=spec.parallelism, retries=spec.retries, cpu=spec.resources.cpu,
                            memory=spec.resources.memory, defaults=spec.to_arguments())


def client(host: str, namespace: str | None = None) -> Any:
    """A kfp.Client for ``host``; an unreachable or refusing endpoint is one line."""
    import kfp

    if not re.match(r"^https?://[^\s/]+", host or ""):
        raise PredNASError(f"bad Kubeflow Pipelines host {host!r}; expected http(s)://host[:port][/path]")
    probe(host)
    with _kfp_errors(host, "connect to"):
        return kfp.Client(host=host, namespace=namespace or "kubeflow",
                          existing_token=os.environ.get("KFP_EXISTING_TOKEN") or None)


def probe(host: str, timeout_s: float = 10.0) -> None:
    """One request to KFP's health endpoint: an unreachable host fails here, once, in one line."""
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered: authentication and routing are kfp's business
    except (urllib.error.URLError, OSError) as exc:
        raise PredNASError(f"Kubeflow Pipelines at {host} unreachable: {getattr(exc, 'reason', exc)}") from None


@contextlib.contextmanager
def _kfp_errors(host: str, action: str) -> Iterator[None]:
    """kfp, HTTP and connection failures as one line."""
    try:
        yield
    except PredNASError:
        raise
    except Exception as exc:  # noqa: BLE001 - kfp raises ApiException, urllib3 and its own TimeoutError
        text = str(exc).strip()
        reason = getattr(exc, "reason", None) or (text.splitlines()[0] if text else type(exc).__name__)
        raise PredNASError(f"Kubeflow Pipelines at {host} failed to {action}: {reason}") from None


@contextlib.contextmanager
def _package(spec: SearchSpec) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="prednas-kfp-") as tmp:
        yield compile_package(spec, Path(tmp) / "prednas_pipeline.yaml")


def submit(spec: SearchSpec, *, host: str, experiment: str, run_name: str | None = None,
           namespace: str | None = None, service_account: str | None = None) -> dict[str, str]:
    """Create one run of the pipeline; returns its id and the URL of its page."""
    spec = cluster_spec(spec)
    kfp_client = client(host, namespace)
    with _package(spec) as package, _kfp_errors(host, "create the run"):
        result = kfp_client.create_run_from_pipeline_package(
            str(package), arguments=spec.to_arguments(), run_name=run_name or spec.run_name or None,
            experiment_name=experiment, namespace=namespace, service_account=service_account,
            enable_caching=False)
    return {"run_id": str(result.run_id), "url": f"{host.rstrip('/')}/#/runs/details/{result.run_id}"}


def schedule(spec: SearchSpec, *, host: str, cron: str, experiment: str, job_name: str,
             max_concurrency: int = 1, catchup: bool = False, namespace: str | None = None,
             service_account: str | None = None, start_time: str | None = None,
             end_time: str | None = None) -> dict[str, str]:
    """Create a recurring run, unless the experiment has one of that name; returns its id."""
    cron = check_cron(cron)
    if not 1 <= max_concurrency <= 10:
        raise PredNASError(f"max_concurrency must be in [1, 10] (KFP's limit), got {max_concurrency}")
    spec = cluster_spec(spec)
    kfp_client = client(host, namespace)
    with _package(spec) as package, _kfp_errors(host, "create the recurring run"):
        exp = kfp_client.create_experiment(experiment, namespace=namespace)
        existing = _recurring_run(kfp_client, exp.experiment_id, job_name)
        if existing is not None:
            return {"recurring_run_id": existing, "experiment_id": str(exp.experiment_id), "created": ""}
        job = kfp_client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=job_name, cron_expression=cron,
            max_concurrency=max_concurrency, no_catchup=not catchup, params=spec.to_arguments(),
            pipeline_package_path=str(package), service_account=service_account, enable_caching=False,
            start_time=start_time, end_time=end_time)
    return {"recurring_run_id": str(job.recurring_run_id), "experiment_id": str(exp.experiment_id), "created": "yes"}


def _recurring_run(kfp_client: Any, experiment_id: str, name: str) -> str | None:
    """The id of the experiment's recurring run called ``name`` (so scheduling twice creates one)."""
    import json

    query = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    found = kfp_client.list_recurring_runs(experiment_id=experiment_id, filter=query, page_size=1)
    runs = getattr(found, "recurring_runs", None) or []
    return str(runs[0].recurring_run_id) if runs else None
