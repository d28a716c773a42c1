"""Compile the pipeline, submit a run and schedule recurring runs on Kubeflow Pipelines (kfp.Client).

A submitted run gets every search parameter explicitly (the config's values), with the
in-cluster MLflow service of ``manifests/`` where the config leaves the tracking URI empty;
a run whose config names no store uses the ``PREDNAS_STORE_URI`` of the cluster's ConfigMap
``prednas-s3``, which the steps read. The package is compiled with the ``StepOptions``
(the step image, a data volume for the evaluate steps). Credentials never travel with the run: the KFP endpoint is
reached with a bearer token from ``KFP_EXISTING_TOKEN`` or the file named by
``KF_PIPELINES_SA_TOKEN_PATH`` (none on a port-forward), and steps read S3 credentials from
the cluster's Secret.

Schedules use KFP's six-field cron (``second minute hour day-of-month month day-of-week``),
one concurrent run by default and no catch-up of runs missed while paused: a recurring
search warm-starts from the triplet store, so replaying missed slots adds nothing.
Scheduling is idempotent by name: an experiment's recurring run of that name is kept, so
a GitOps Job may register it on every sync; ``replace_existing`` deletes it and creates the
new schedule instead.

Nothing is reported that the API did not confirm: the endpoint is probed once before kfp
is used (a login redirect, 401/403, 404 or 5xx is one line naming it, instead of kfp's
retries and tracebacks), and a created run or recurring run is read back by its id. kfp's
own prints, warnings and retry logging stay off the terminal unless asked for.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prednas.errors import PredNASError
from prednas.pipeline.config import SearchSpec

# KFP's cron fields with their ranges and names (robfig/cron with seconds).
_CRON_FIELDS = (("second", 0, 59, ()), ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
                ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
                ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")))


_PVC_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a Kubernetes object name (DNS-1123 label)


@dataclass(frozen=True)
class StepOptions:
    """Where the steps run: their image and a PersistentVolumeClaim mounted into the evaluate steps."""

    image: str = ""  # '' = the released image of components/image.py
    data_pvc: str = ""  # '' = no data volume
    data_mount: str = "/data"

    def __post_init__(self) -> None:
        from prednas.components.image import IMAGE

        object.__setattr__(self, "image", self.image or IMAGE)
        if any(c.isspace() for c in self.image) or self.image.startswith("-"):
            raise PredNASError(f"--image {self.image!r} is not an image reference; expected e.g. {IMAGE}")
        if self.data_pvc and (len(self.data_pvc) > 63 or not _PVC_NAME.match(self.data_pvc)):
            raise PredNASError(f"--data-pvc {self.data_pvc!r} is not a PersistentVolumeClaim name; expected lowercase "
                               "letters, digits and '-' (at most 63), e.g. cifar10-data")
        if not self.data_mount.startswith("/") or self.data_mount.rstrip("/") == "" or ":" in self.data_mount:
            raise PredNASError(f"--data-mount {self.data_mount!r} is not a mount path; expected an absolute folder "
                               "other than /, e.g. /data")

    def compile_options(self) -> dict[str, str]:
        """The keyword arguments of ``build_pipeline`` these options set."""
        return {"image": self.image, "data_pvc": self.data_pvc, "data_mount": self.data_mount.rstrip("/")}


def cluster_spec(spec: SearchSpec) -> SearchSpec:
    """Fill an empty tracking URI with the in-cluster MLflow of ``manifests/`` (the steps fill an empty store)."""
    from prednas.pipelines.prednas_pipeline import CLUSTER_TRACKING_URI

    return replace(spec, tracking_uri=spec.tracking_uri or CLUSTER_TRACKING_URI)


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


def check_for_cluster(spec: SearchSpec) -> str | None:
    """Check here what can be checked of a search that runs on the cluster; None, or why the cost window was not.

    Every stage's evaluator options are checked (``SearchSpec.check_evaluators``) but not its
    data: the steps read that from the cluster's volume. A cost window too narrow for the
    N samples is refused as ``prednas run`` refuses it (``steps.check_samples``: analytic,
    opens nothing), except where the space's costs come from data that is not readable here
    (an evaluator that trains sizes the network's head by the data's classes): the cluster's
    sample step checks that window, and the returned line says so.
    """
    from prednas.evaluators.registry import evaluator_entry
    from prednas.pipeline.context import build_evaluator
    from prednas.pipeline.steps import check_samples, draw_window

    spec.check_evaluators(data=False)
    config = spec.stage_evaluators["sample"]
    if draw_window(spec) is not None and evaluator_entry(config["name"]).trains:
        check = getattr(build_evaluator(config), "check", None)
        try:
            if check is not None:
                check()
        except PredNASError as exc:
            return (f"cost window not checked here: the sample stage's data is not readable on this machine "
                    f"({exc}); the cluster's sample step checks it")
    check_samples(spec)
    return None


def compile_package(spec: SearchSpec, path: str | Path, options: StepOptions | None = None, *,
                    check: bool = True) -> Path:
    """Write the pipeline package with ``spec``'s and ``options``' compile-time settings and ``spec``'s parameters.

    ``check_for_cluster`` runs first unless ``check`` is False (a caller that ran it already).
    """
    from prednas.pipelines.prednas_pipeline import compile_pipeline

    if check:
        check_for_cluster(spec)
    spec = cluster_spec(spec)
    return compile_pipeline(path, parallelism=spec.parallelism, retries=spec.retries, cpu=spec.resources.cpu,
                            memory=spec.resources.memory, rounds=spec.rounds, defaults=spec.to_arguments(),
                            **(options or StepOptions()).compile_options())


LOGIN_HINT = "pass a token (KFP_EXISTING_TOKEN or KF_PIPELINES_SA_TOKEN_PATH) or use the in-cluster address"
HEALTHZ = "/apis/v2beta1/healthz"


def token() -> str | None:
    """The bearer token for the KFP API: ``KFP_EXISTING_TOKEN``, else the file ``KF_PIPELINES_SA_TOKEN_PATH`` names."""
    if os.environ.get("KFP_EXISTING_TOKEN"):
        return os.environ["KFP_EXISTING_TOKEN"].strip()
    path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH")
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        raise PredNASError(f"cannot read the token file KF_PIPELINES_SA_TOKEN_PATH={path}: {exc.strerror}") from None


def http_failure(host: str, status: int, reason: str, location: str | None = None) -> PredNASError:
    """One line naming what an HTTP answer of the KFP API means for the user."""
    where = f"Kubeflow Pipelines at {host}"
    answer = f"{status} {reason}".strip()
    if 300 <= status < 400 and location and urllib.parse.urlsplit(location).path.endswith(HEALTHZ):
        return PredNASError(f"{where}: the host redirected to {location}: pass that address (less "
                            f"{HEALTHZ}) as --host")
    if 300 <= status < 400:
        target = f" ({location})" if location else ""
        return PredNASError(f"{where}: the host redirected to a login page{target}: {LOGIN_HINT}")
    if status == 401:
        return PredNASError(f"{where} refused the request ({answer}): {LOGIN_HINT}")
    if status == 403:
        return PredNASError(f"{where} refused the request ({answer}): the token's identity may not use this "
                            "namespace; pass --namespace with your profile")
    if status == 404:
        return PredNASError(f"{where} has no pipelines API ({answer}): check --host (the address of the "
                            "Kubeflow Pipelines UI or API, e.g. http://localhost:8080)")
    if status >= 500:
        return PredNASError(f"{where} failed with a server error ({answer}): check the ml-pipeline service "
                            "and its logs, then retry")
    return PredNASError(f"{where} answered {answer}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect surfaces as an HTTPError with its 3xx status


def probe(host: str, bearer: str | None = None, timeout_s: float = 10.0) -> None:
    """One request to KFP's health endpoint; anything but the API's JSON answer is one line naming it."""
    request = urllib.request.Request(f"{host.rstrip('/')}{HEALTHZ}", headers={"Accept": "application/json"})
    if bearer:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout_s) as answer:
            kind, body = answer.headers.get_content_type(), answer.read(65536)
    except urllib.error.HTTPError as exc:
        raise http_failure(host, exc.code, exc.reason, exc.headers.get("Location")) from None
    except (urllib.error.URLError, OSError) as exc:
        raise PredNASError(f"Kubeflow Pipelines at {host} unreachable: {getattr(exc, 'reason', exc)}") from None
    if kind != "application/json" or not body.lstrip().startswith(b"{"):
        raise PredNASError(f"Kubeflow Pipelines at {host} answered with a web page ({kind}), not the pipelines "
                           f"API (a login page?): {LOGIN_HINT}")


def client(host: str, namespace: str | None = None) -> Any:
    """A kfp.Client for ``host``, after one probe: an unreachable or refusing endpoint is one line."""
    import kfp

    if not re.match(r"^https?://[^\s/]+", host or ""):
        raise PredNASError(f"bad Kubeflow Pipelines host {host!r}; expected http(s)://host[:port][/path]")
    bearer = token()
    probe(host, bearer)
    with _kfp_errors(host, "connect to"):
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=bearer)


@contextlib.contextmanager
def _kfp_errors(host: str, action: str) -> Iterator[None]:
    """kfp, HTTP and connection failures as one line."""
    try:
        yield
    except PredNASError:
        raise
    except Exception as exc:  # noqa: BLE001 - kfp raises ApiException, urllib3 and its own TimeoutError
        status = getattr(exc, "status", None)
        if isinstance(status, int) and status >= 300:
            headers = getattr(exc, "headers", None) or {}
            raise http_failure(host, status, str(getattr(exc, "reason", "") or ""), headers.get("Location")) from None
        text = str(exc).strip()
        reason = getattr(exc, "reason", None) or (text.splitlines()[0] if text else type(exc).__name__)
        raise PredNASError(f"Kubeflow Pipelines at {host} failed to {action}: {reason}") from None


@contextlib.contextmanager
def kfp_output(show: bool = False) -> Iterator[None]:
    """Keep kfp's prints, warnings and retry logging off the terminal, or show them on stderr (``--debug``)."""
    import io
    import logging
    import sys
    import warnings

    root = logging.getLogger()
    handler: logging.Handler = logging.StreamHandler(sys.stderr) if show else logging.NullHandler()
    level = root.level
    root.addHandler(handler)
    if show:
        root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(sys.stderr if show else io.StringIO()), warnings.catch_warnings():
            if not show:
                warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _identifier(value: Any) -> str | None:
    """An id the API answered with, or None for a missing or empty one."""
    return value.strip() if isinstance(value, str) and value.strip() else None


@contextlib.contextmanager
def _package(spec: SearchSpec, options: StepOptions | None) -> Iterator[Path]:
    """The package in a temporary folder (``check_for_cluster`` has run before the endpoint was contacted)."""
    with tempfile.TemporaryDirectory(prefix="prednas-kfp-") as tmp:
        yield compile_package(spec, Path(tmp) / "prednas_pipeline.yaml", options, check=False)


def submit(spec: SearchSpec, *, host: str, experiment: str, run_name: str | None = None,
           namespace: str | None = None, service_account: str | None = None,
           options: StepOptions | None = None, show_kfp_output: bool = False) -> dict[str, str]:
    """Create one run of the pipeline and read it back; returns its id, the URL of its page and,
    where ``check_for_cluster`` could not check the cost window here, why (``unchecked``)."""
    unchecked = check_for_cluster(spec)  # before the endpoint is contacted
    spec = cluster_spec(spec)
    with kfp_output(show_kfp_output):
        kfp_client = client(host, namespace)
        with _package(spec, options) as package, _kfp_errors(host, "create the run"):
            result = kfp_client.create_run_from_pipeline_package(
                str(package), arguments=spec.to_arguments(), run_name=run_name or spec.run_name or None,
                experiment_name=experiment, namespace=namespace, service_account=service_account,
                enable_caching=False)
        run_id = _identifier(getattr(result, "run_id", None))
        if run_id is None:
            raise PredNASError(f"Kubeflow Pipelines at {host} answered without a run id, so no run was created "
                               f"(a login page or proxy in between?): {LOGIN_HINT}")
        with _kfp_errors(host, f"find the run {run_id} it created"):
            found = _identifier(getattr(kfp_client.get_run(run_id), "run_id", None))
        if found != run_id:
            raise PredNASError(f"Kubeflow Pipelines at {host} answered with run id {run_id} but has no such run")
    return {"run_id": run_id, "url": f"{host.rstrip('/')}/#/runs/details/{run_id}",
            **({"unchecked": unchecked} if unchecked else {})}


def schedule(spec: SearchSpec, *, host: str, cron: str, experiment: str, job_name: str,
             max_concurrency: int = 1, catchup: bool = False, namespace: str | None = None,
             service_account: str | None = None, start_time: str | None = None,
             end_time: str | None = None, replace_existing: bool = False,
             options: StepOptions | None = None, show_kfp_output: bool = False) -> dict[str, str]:
    """Create a recurring run and read it back; one of that name is kept, or replaced with ``replace_existing``.

    Returns ``recurring_run_id``, ``experiment_id``, ``status`` (``created``, ``exists`` or
    ``replaced``), when replaced, ``replaced_id``, and ``unchecked`` as ``submit`` returns it.
    """
    cron = check_cron(cron)
    if not 1 <= max_concurrency <= 10:
        raise PredNASError(f"max_concurrency must be in [1, 10] (KFP's limit), got {max_concurrency}")
    unchecked = check_for_cluster(spec)  # before the endpoint is contacted
    spec = cluster_spec(spec)
    with kfp_output(show_kfp_output):
        kfp_client = client(host, namespace)
        with _kfp_errors(host, f"create the experiment {experiment!r}"):
            experiment_id = _identifier(getattr(kfp_client.create_experiment(experiment, namespace=namespace),
                                                "experiment_id", None))
        if experiment_id is None:
            raise PredNASError(f"Kubeflow Pipelines at {host} answered without an experiment id for "
                               f"{experiment!r} (a login page or proxy in between?): {LOGIN_HINT}")
        out = {"experiment_id": experiment_id, "status": "created", **({"unchecked": unchecked} if unchecked else {})}
        with _kfp_errors(host, "list the recurring runs"):
            existing = _recurring_run(kfp_client, experiment_id, job_name)
        if existing is not None and not replace_existing:
            return {**out, "recurring_run_id": existing, "status": "exists"}
        if existing is not None:
            with _kfp_errors(host, f"delete the recurring run {existing}"):
                kfp_client.delete_recurring_run(existing)
            out |= {"status": "replaced", "replaced_id": existing}
        with _package(spec, options) as package, _kfp_errors(host, "create the recurring run"):
            job = kfp_client.create_recurring_run(
                experiment_id=experiment_id, job_name=job_name, cron_expression=cron,
                max_concurrency=max_concurrency, no_catchup=not catchup, params=spec.to_arguments(),
                pipeline_package_path=str(package), service_account=service_account, enable_caching=False,
                start_time=start_time, end_time=end_time)
        job_id = _identifier(getattr(job, "recurring_run_id", None))
        if job_id is None:
            raise PredNASError(f"Kubeflow Pipelines at {host} answered without a recurring run id, so no schedule "
                               f"was created (a login page or proxy in between?): {LOGIN_HINT}")
        with _kfp_errors(host, f"find the recurring run {job_id} it created"):
            found = _identifier(getattr(kfp_client.get_recurring_run(job_id), "recurring_run_id", None))
        if found != job_id:
            raise PredNASError(f"Kubeflow Pipelines at {host} answered with recurring run id {job_id} "
                               "but has no such recurring run")
    return {**out, "recurring_run_id": job_id}


def _recurring_run(kfp_client: Any, experiment_id: str, name: str) -> str | None:
    """The id of the experiment's recurring run called ``name`` (so scheduling twice creates one)."""
    import json

    query = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    found = kfp_client.list_recurring_runs(experiment_id=experiment_id, filter=query, page_size=1)
    runs = getattr(found, "recurring_runs", None) or []
    return str(runs[0].recurring_run_id) if runs else None
