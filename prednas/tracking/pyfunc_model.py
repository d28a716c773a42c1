"""MLflow "models from code" definition of a registered prednas predictor.

MLflow copies this file into the logged model and executes it on ``mlflow.pyfunc.load_model``;
nothing is pickled. The weights travel as the ``state`` artifact written by
``Predictor.state_bytes`` and are read back with ``torch.load(weights_only=True)`` (through
``Predictor.from_bytes``), so loading a registered predictor cannot run foreign code.

Input: a DataFrame with an ``arch`` column of architecture JSON (the space's ``to_dict``
form, as in the triplet store and the child runs' ``arch`` param), any number of rows.
Output: the predicted target for each row, in the units it was fitted in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class PredictorModel(PythonModel):
    """Scores architectures with a fitted prednas predictor."""

    def load_context(self, context: Any) -> None:
        """Rebuild the predictor for the space named in the model config."""
        from prednas.predictors.fit import Predictor
        from prednas.spaces import get_space

        self.space = get_space(context.model_config["space"])
        self.predictor = Predictor.from_bytes(self.space, Path(context.artifacts["state"]).read_bytes())

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Predicted targets for the architectures in ``model_input["arch"]``.

        A DataFrame hint is one MLflow infers no second schema from: the logged signature stays the schema.
        """
        archs = [self.space.from_dict(json.loads(a) if isinstance(a, str) else a) for a in model_input["arch"]]
        return self.predictor.predict_archs(archs)


mlflow.models.set_model(PredictorModel())
