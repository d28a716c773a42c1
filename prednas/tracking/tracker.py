"""MLflow 3 tracking of a PredNAS search: a parent run, one child per measured architecture.

Layout in the tracking server (see ``runs.py`` for the child run names and ``registry.py``
for predictors):

- one *parent run* per pipeline run (``prednas.kind=search``) in a named experiment; when
  the environment names a run (``MLFLOW_RUN_ID``, injected by Kubeflow's MLflow
  integration) that run is the parent; steps in other pods ``attach`` to it by id;
- one *child run* per measured triplet, found again by (arch_id, stage, trial) so a rerun
  never duplicates it;
- the triplet table as a dataset input of the parent (context ``predictor-fit``) and as
  CSV/JSONL artifacts; each fitted predictor as a registered model version;
- final metrics, a report and plots (``plots.py``) on the parent.

The triplet store is written first and is the system of record; tracking is a view that a
rerun can always rebuild. Every MLflow failure surfaces as one PredNASError line naming the
server and the action. Only ``MlflowClient`` is used (no fluent global state), so two
trackers on two servers can live in one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prednas.errors import PredNASError
from prednas.store.triplet import Triplet, canonical_json, training_hash
from prednas.tracking import registry, runs

PROBE_TIMEOUT_S = 10.0
STATUSES = ("FINISHED", "FAILED", "KILLED")
BATCH = 100  # MLflow's per-call limit on params


def redact(uri: str) -> str:
    """``uri`` without any ``user:password@`` part."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


def probe(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast with one line when an HTTP tracking server does not answer."""
    if urlparse(uri).scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered (auth, proxy or an old server without /health)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            return  # custom TLS settings are MLflow's business (MLFLOW_TRACKING_SERVER_CERT_PATH)
        reason = exc.reason
    except OSError as exc:  # timeouts, resets
        reason = exc
    raise PredNASError(f"MLflow tracking server {redact(uri)} unreachable: {reason}")


def _default_artifacts(uri: str) -> str | None:
    """For a SQLite store, artifacts go beside the database (not into the working directory)."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):]).absolute()
    db.parent.mkdir(parents=True, exist_ok=True)
    return (db.parent / "mlartifacts").as_uri()


def _reason(message: str, code: str) -> str:
    """The useful part of an MLflow error: its first line, or why the server could not be reached."""
    first = message.strip().splitlines()[0] if message.strip() else code
    if first.startswith("API request to") and "Max retries exceeded" in first:
        errno = re.search(r"\[Errno -?\d+\] [^\"')]+", first)
        return f"server unreachable ({errno.group(0) if errno else 'no response'})"
    return first


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class Tracker:
    """Logs one search to an MLflow tracking server or local store."""

    def __init__(self, tracking_uri: str, experiment: str, *, artifact_location: str | None = None) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise PredNASError("tracking needs mlflow: pip install 'prednas[tracking]'") from None
        if not isinstance(tracking_uri, str) or not tracking_uri.strip():
            raise PredNASError(f"bad tracking URI {tracking_uri!r}; expected http(s)://host:port or sqlite:///path")
        if not isinstance(experiment, str) or not experiment.strip():
            raise PredNASError(f"bad experiment name {experiment!r}")
        self.tracking_uri = tracking_uri
        probe(tracking_uri)
        self._parents: dict[str, str] = {}  # run id -> experiment id
        self._inherited: dict[str, dict[str, str]] = {}  # run id -> the tags its children carry too
        with self._errors("connect"):
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            self.experiment_id = self._experiment(experiment, artifact_location or _default_artifacts(tracking_uri))

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            raise PredNASError(f"MLflow at {redact(self.tracking_uri)} failed to {action}: "
                               f"{_reason(str(exc.message), exc.error_code)}") from None
        except OSError as exc:
            raise PredNASError(f"MLflow at {redact(self.tracking_uri)} failed to {action}: {exc}") from None

    def _experiment(self, name: str, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(name, artifact_location=artifact_location)
            except MlflowException as exc:  # created by a concurrent step
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self.client.get_experiment_by_name(name)
        if exp.lifecycle_stage != "active":
            raise PredNASError(f"MLflow experiment {name!r} is deleted; restore it or choose another name")
        return exp.experiment_id

    # -- the parent run -----------------------------------------------------------------
    def start_parent(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, Any], *,
                     key: str | None = None) -> str:
        """The parent run: ``MLFLOW_RUN_ID``'s run, else the run tagged ``key``, else a new one."""
        with self._errors("start the parent run"):
            run = self._existing_parent(key)
            all_tags = {str(k): str(v) for k, v in tags.items()} | {runs.TAG_KIND: runs.KIND_SEARCH}
            if key is not None:
                all_tags[runs.TAG_RUN_KEY] = key
            if run is None:
                run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            else:
                for name, value in all_tags.items():
                    self.client.set_tag(run.info.run_id, name, value)
            self._log_params(run, runs.flatten_params(params))
            self._parents[run.info.run_id] = run.info.experiment_id
            self._inherited[run.info.run_id] = {k: v for k, v in {**run.data.tags, **all_tags}.items()
                                                if k in runs.INHERITED}
            return run.info.run_id

    def find_parent(self, key: str) -> str | None:
        """The id of the parent run tagged ``key`` (or ``MLFLOW_RUN_ID``'s), None when there is none."""
        with self._errors("find the parent run"):
            run = self._existing_parent(key)
        return run.info.run_id if run is not None else None

    def _existing_parent(self, key: str | None) -> Any:
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id:
            return self._run(run_id, "MLFLOW_RUN_ID")
        if key is None:
            return None
        found = self.client.search_runs([self.experiment_id], f"tags.`{runs.TAG_RUN_KEY}` = {runs.quote(key)} and "
                                        f"tags.`{runs.TAG_KIND}` = {runs.quote(runs.KIND_SEARCH)}",  # not a child
                                        max_results=1, order_by=["attributes.start_time ASC"])
        return found[0] if found else None

    def _run(self, run_id: str, what: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise  # the server is down or failing: the caller's _errors says so, not "no such run"
            raise PredNASError(f"{what} {run_id!r} names no run at {redact(self.tracking_uri)}") from None
        if run.info.lifecycle_stage != "active":
            raise PredNASError(f"{what} {run_id!r} is a deleted run")
        return run

    def _log_params(self, run: Any, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        old = run.data.params
        clash = [k for k, v in params.items() if k in old and old[k] != v]
        if clash:
            raise PredNASError(f"run {run.info.run_id} already has param {clash[0]}={old[clash[0]]!r}, "
                               f"not {params[clash[0]]!r}")
        new = [Param(k, v) for k, v in params.items() if k not in old]
        for start in range(0, len(new), BATCH):
            self.client.log_batch(run.info.run_id, params=new[start:start + BATCH])

    def attach(self, run_id: str) -> str:
        """Use an existing parent run (created by another step) and return its id."""
        with self._errors(f"attach to run {run_id}"):
            run = self._run(run_id, "parent run")
            self._parents[run_id] = run.info.experiment_id
            self._inherited[run_id] = {k: v for k, v in run.data.tags.items() if k in runs.INHERITED}
        return run_id

    def _experiment_of(self, parent_run_id: str) -> str:
        if parent_run_id not in self._parents:
            self.attach(parent_run_id)
        return self._parents[parent_run_id]

    def close(self, parent_run_id: str, status: str = "FINISHED") -> None:
        """Mark the parent run FINISHED, FAILED or KILLED."""
        if status not in STATUSES:
            raise PredNASError(f"run status {status!r}; expected one of {', '.join(STATUSES)}")
        with self._errors(f"close run {parent_run_id}"):
            self.client.set_terminated(parent_run_id, status)

    # -- child runs ---------------------------------------------------------------------
    def log_triplet(self, parent_run_id: str, triplet: Triplet) -> str:
        """The child run of ``triplet`` under the parent, created unless it exists; returns its id."""
        with self._errors(f"log {triplet.key}"):
            exp = self._experiment_of(parent_run_id)
            found = self.client.search_runs([exp], runs.children_filter(parent_run_id, triplet), max_results=1)
            return self._complete(found[0], triplet) if found else self._create_child(exp, parent_run_id, triplet)

    def log_triplets(self, parent_run_id: str, triplets: Iterable[Triplet], *, round_: int = 0) -> list[str]:
        """``log_triplet`` for many, with one search for the children that already exist.

        ``round_`` (1..R for the top-K stage's rounds) becomes the children's ``prednas.round`` tag.
        """
        extra = {runs.TAG_ROUND: str(round_)} if round_ else {}
        with self._errors(f"log triplets under run {parent_run_id}"):
            exp = self._experiment_of(parent_run_id)
            existing = {runs.identity_of(r): r for r in self.children(parent_run_id)}
            ids = []
            for t in triplets:
                run = existing.get(runs.child_identity(t))
                ids.append(self._complete(run, t) if run else self._create_child(exp, parent_run_id, t, extra))
            return ids

    def children(self, parent_run_id: str) -> list[Any]:
        """Every evaluation child run of a parent (MLflow ``Run`` objects)."""
        with self._errors(f"list the children of run {parent_run_id}"):
            exp, found, token = self._experiment_of(parent_run_id), [], None
            while True:
                page = self.client.search_runs([exp], runs.children_filter(parent_run_id), max_results=1000,
                                               page_token=token)
                found += list(page)
                token = page.token
                if not token:
                    return found

    def _create_child(self, exp: str, parent_run_id: str, triplet: Triplet,
                      extra: Mapping[str, str] | None = None) -> str:
        tags = {**self._inherited.get(parent_run_id, {}), **runs.child_tags(parent_run_id, triplet), **(extra or {})}
        run = self.client.create_run(exp, start_time=_ms(triplet.created_at), run_name=runs.child_run_name(triplet),
                                     tags=tags)
        return self._fill(run, triplet)

    def _complete(self, run: Any, triplet: Triplet) -> str:
        return run.info.run_id if run.info.status == "FINISHED" else self._fill(run, triplet)

    def _fill(self, run: Any, triplet: Triplet) -> str:
        """Log what a child still lacks and finish it (a crash may have left it half-logged)."""
        from mlflow.entities import Metric, Param

        run_id, stamp = run.info.run_id, _ms(triplet.created_at)
        params = [Param(k, v) for k, v in runs.child_params(triplet).items() if k not in run.data.params]
        metrics = [Metric(k, v, stamp, 0) for k, v in runs.child_metrics(triplet).items() if k not in run.data.metrics]
        self.client.log_batch(run_id, metrics=metrics, params=params)
        if runs.needs_arch_artifact(triplet):
            self.client.log_dict(run_id, triplet.arch, "arch.json")
        self.client.update_run(run_id, status="FINISHED")  # set_terminated would print a URL per child
        return run_id

    # -- predictor fit ------------------------------------------------------------------
    def log_training_set(self, parent_run_id: str, triplets: Iterable[Triplet], context: str = "predictor-fit", *,
                         source: str | None = None) -> str:
        """The triplet table as a dataset input and CSV/JSONL artifacts; returns its training hash."""
        import mlflow.data
        import pandas as pd
        from mlflow.entities import Dataset, DatasetInput, InputTag

        triplets = list(triplets)
        spaces = {t.space for t in triplets}
        if len(spaces) != 1:
            raise PredNASError(f"a training set needs triplets of exactly one space, got {sorted(spaces) or 'none'}")
        digest = training_hash(triplets)
        table = pd.DataFrame([t.row() for t in triplets])
        with self._errors(f"log the training set under run {parent_run_id}"):
            dataset = mlflow.data.from_pandas(table, source=source, targets="accuracy", digest=digest,
                                              name=f"{spaces.pop()}-triplets")
            entity = Dataset(**dataset.to_dict())
            self.client.log_inputs(parent_run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])])
            folder = f"datasets/{context}/{digest}"
            self.client.log_text(parent_run_id, table.to_csv(index=False), f"{folder}/triplets.csv")
            lines = "".join(canonical_json(json.loads(t.to_json())) + "\n" for t in triplets)
            self.client.log_text(parent_run_id, lines, f"{folder}/triplets.jsonl")
        return digest

    def log_predictor(self, parent_run_id: str, predictor_bytes: bytes, *, space: str, target: str,
                      training_hash: str, metrics: Mapping[str, float]) -> str:
        """Log a fitted predictor as a model of the parent run and register a version; returns it."""
        with self._errors(f"register the {target} predictor of {space}"):
            return registry.log_predictor(self.client, self._experiment_of(parent_run_id), parent_run_id,
                                          predictor_bytes, space=space, target=target,
                                          training_hash=training_hash, metrics=metrics)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` (e.g. ``champion``) of registered model ``name`` at ``version``."""
        with self._errors(f"set alias {alias} of {name}"):
            self.client.set_registered_model_alias(name, registry.check_alias(alias), str(version))

    def load_predictor_bytes(self, name: str, ref: str | int = "latest") -> bytes:
        """The state bytes of a registered predictor by version number, alias or ``latest``."""
        with self._errors(f"load {name}/{ref}"):
            return registry.load_state(self.client, self.tracking_uri, name, ref)

    def mark_best(self, parent_run_id: str, triplet: Triplet) -> str | None:
        """Tag the parent with the chosen architecture and the child run that measured it; returns that run's id.

        The child is this parent's, else (a warm-start result) the one of the run that measured it.
        """
        with self._errors(f"mark the best architecture of run {parent_run_id}"):
            exp = self._experiment_of(parent_run_id)
            found = self.client.search_runs([exp], runs.children_filter(parent_run_id, triplet), max_results=1)
            if not found and triplet.run_id and triplet.run_id != parent_run_id:
                found = self.client.search_runs([exp], runs.children_filter(triplet.run_id, triplet), max_results=1)
            child = found[0].info.run_id if found else None
            tags = {runs.TAG_BEST_ARCH: runs.clip(runs.arch_text(triplet.arch), runs.TAG_LIMIT),
                    runs.TAG_BEST_ARCH_ID: triplet.arch_id, runs.TAG_BEST_CHILD: child or ""}
            for name, value in tags.items():
                self.client.set_tag(parent_run_id, name, value)
            return child

    def log_progress(self, parent_run_id: str, point: Mapping[str, float]) -> None:
        """The best-so-far after a round (``best_accuracy``, ``best_test_accuracy``) at step = queries so far."""
        from mlflow.entities import Metric

        now, step = _ms(time.time()), int(point["queries"])
        metrics = [Metric(k, float(point[k]), now, step) for k in ("best_accuracy", "best_test_accuracy", "round")
                   if k in point]
        with self._errors(f"log the progress of run {parent_run_id}"):
            self.client.log_batch(parent_run_id, metrics=metrics)

    # -- the end ------------------------------------------------------------------------
    def log_final(self, parent_run_id: str, metrics: Mapping[str, float], figures: Mapping[str, Any] | None = None,
                  *, report: Mapping[str, Any] | None = None) -> None:
        """Final metrics, plots (``plots/{name}.png``) and an optional ``final/report.json``."""
        from mlflow.entities import Metric

        now, step = _ms(time.time()), int(metrics.get("queries", 0))  # the trajectory's last point
        with self._errors(f"log the final results of run {parent_run_id}"):
            self.client.log_batch(parent_run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
            for name, figure in (figures or {}).items():  # at the root too: MLflow's compare view shows only those
                self.client.log_figure(parent_run_id, figure, f"plots/{name}.png")
                self.client.log_figure(parent_run_id, figure, f"{name}.png")
            if report is not None:
                self.client.log_dict(parent_run_id, dict(report), "final/report.json")

