"""Fitted predictors as MLflow logged models and registered model versions (MLflow 3).

One registered model per space and target (``prednas-{space}-{target}``; e.g. the main
accuracy predictor and an auxiliary cost predictor), one version per fit. A version carries
the training-set hash (``prednas.training_hash``), the space, the target and the fit
metrics as tags; the fit metrics are also logged on the parent run
(``predictor.{target}.{metric}``, step = version) and linked to the logged model. Fitting
the same training set again within one parent run (a retried step) returns the version
already registered instead of adding one.

The model is a pyfunc built from code (``pyfunc_model.py``) plus the ``state`` artifact from
``Predictor.state_bytes``: no pickle is written or read, and the state is loaded with
``torch.load(weights_only=True)``. It takes a DataFrame of architecture JSON, so no batch
size is baked in (the pt2 export that ``mlflow.pytorch`` defaults to fixes it).

Aliases: MLflow reserves ``latest`` (``models:/prednas-nb201-accuracy/latest`` already names
the newest version), so no alias is set for it; ``champion`` is set by the caller through
``set_alias`` for the predictor behind the best final result.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prednas.errors import PredNASError

TAG_TRAINING_HASH = "prednas.training_hash"
TAG_TARGET = "prednas.target"
TAG_SPACE = "prednas.space"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
STATE_FILE = "state.pt"
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")


def model_name(space: str, target: str) -> str:
    """Registered model name of the ``target`` predictor of ``space``."""
    for what, value in (("space", space), ("target", target)):
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise PredNASError(f"predictor {what} {value!r} must match {NAME_RE.pattern}")
    return f"prednas-{space}-{target}"


def _requirements() -> list[str]:
    import mlflow
    import torch

    import prednas

    return [f"prednas=={prednas.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"mlflow=={mlflow.__version__}"]


def _save_model(path: Path, state: bytes, *, space: str, target: str, run_id: str, model_id: str) -> None:
    import mlflow
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    state_file = path.parent / STATE_FILE
    state_file.write_bytes(state)
    signature = ModelSignature(inputs=Schema([ColSpec("string", "arch")]), outputs=Schema([ColSpec("double")]))
    example = _example(space)
    mlflow.pyfunc.save_model(path, python_model=str(MODEL_CODE), artifacts={"state": str(state_file)},
                             model_config={"space": space, "target": target}, signature=signature,
                             pip_requirements=_requirements(), input_example=example,
                             mlflow_model=Model(run_id=run_id, model_id=model_id))


def _example(space: str) -> Any:
    """One architecture of the space as the model's input example."""
    import numpy as np
    import pandas as pd

    from prednas.spaces import get_space
    from prednas.store.triplet import canonical_json

    instance = get_space(space)
    arch = instance.sample(np.random.default_rng(0))
    return pd.DataFrame({"arch": [canonical_json(instance.to_dict(arch))]})


def existing_version(client: Any, name: str, parent_run_id: str, training_hash: str) -> str | None:
    """The version this parent run already registered for this training set, if any."""
    query = f"name = '{name}' and run_id = '{parent_run_id}'"
    for version in client.search_model_versions(query):
        if version.tags.get(TAG_TRAINING_HASH) == training_hash:
            return str(version.version)
    return None


def _ensure_registered_model(client: Any, name: str, space: str, target: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags={TAG_SPACE: space, TAG_TARGET: target},
                                       description=f"prednas {target} predictor for the {space} search space")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def log_predictor(client: Any, experiment_id: str, parent_run_id: str, state: bytes, *, space: str, target: str,
                  training_hash: str, metrics: Mapping[str, float]) -> str:
    """Log ``state`` as a model of the parent run and register it; returns the version."""
    name = model_name(space, target)
    _ensure_registered_model(client, name, space, target)
    version = existing_version(client, name, parent_run_id, training_hash)
    if version is not None:
        return version
    model = client.create_logged_model(experiment_id, name=f"predictor-{target}", source_run_id=parent_run_id,
                                       params={"space": space, "target": target, "training_hash": training_hash},
                                       tags={TAG_TRAINING_HASH: training_hash}, model_type="prednas-predictor")
    with tempfile.TemporaryDirectory(prefix="prednas-model-") as tmp:
        path = Path(tmp) / "model"
        _save_model(path, state, space=space, target=target, run_id=parent_run_id, model_id=model.model_id)
        client.log_model_artifacts(model.model_id, str(path))
    client.finalize_logged_model(model.model_id, "READY")
    tags = {TAG_TRAINING_HASH: training_hash, TAG_SPACE: space, TAG_TARGET: target}
    tags.update({f"metric.{k}": f"{float(v):.6g}" for k, v in metrics.items()})
    created = client.create_model_version(name, source=model.artifact_location, run_id=parent_run_id,
                                          tags=tags, model_id=model.model_id)
    version = str(created.version)
    client.set_logged_model_tags(model.model_id,
                                 {"mlflow.modelVersions": json.dumps([{"name": name, "version": version}])})
    now = int(time.time() * 1000)
    for key, value in metrics.items():
        client.log_metric(parent_run_id, f"predictor.{target}.{key}", float(value), timestamp=now,
                          step=int(version), model_id=model.model_id)
    return version


def check_alias(alias: str) -> str:
    """An alias MLflow accepts (``latest`` and version-like names are reserved)."""
    if not isinstance(alias, str) or not ALIAS_RE.match(alias) or alias.lower() == "latest" or \
            re.fullmatch(r"[vV]\d+", alias):
        raise PredNASError(f"bad model alias {alias!r}; 'latest' and 'v<number>' are reserved by MLflow, "
                           "use a name like 'champion'")
    return alias


def resolve_version(client: Any, name: str, ref: str | int) -> Any:
    """The model version named by a number, an alias, or ``latest``."""
    ref = str(ref)
    if ref.isdigit():
        return client.get_model_version(name, ref)
    if ref == "latest":
        versions = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"], max_results=1)
        if not versions:
            raise PredNASError(f"registered model {name!r} has no versions")
        return versions[0]
    return client.get_model_version_by_alias(name, ref)


def load_state(client: Any, tracking_uri: str, name: str, ref: str | int) -> bytes:
    """The predictor state (``Predictor.state_bytes``) of a registered version."""
    from mlflow.artifacts import download_artifacts

    version = resolve_version(client, name, ref)
    with tempfile.TemporaryDirectory(prefix="prednas-model-") as tmp:
        local = download_artifacts(artifact_uri=f"{version.source.rstrip('/')}/artifacts/{STATE_FILE}",
                                   dst_path=tmp, tracking_uri=tracking_uri)
        return Path(local).read_bytes()
