"""MLflow 3 tracking of PredNAS searches: runs, child runs per architecture, registered predictors, plots.

``Tracker`` is the entry point (``tracker.py``); names of tags, params and metrics are in
``runs.py``; predictor registration in ``registry.py``; figures in ``plots.py``.
"""

from __future__ import annotations

from prednas.tracking.registry import model_name
from prednas.tracking.tracker import Tracker

__all__ = ["Tracker", "model_name"]
