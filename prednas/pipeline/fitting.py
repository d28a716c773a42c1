"""Predictor fit with cross-validated quality (paper Sec. IV reports Kendall's tau).

``fit_with_cv`` fits on every triplet with ``prednas.predictors.fit.fit_predictor`` and
reports how well that recipe ranks unseen architectures: k-fold cross-validation, each
fold fitted from scratch on the others, Kendall's tau and RMSE over the pooled
out-of-fold predictions (pooling keeps tau meaningful when folds hold only a handful).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import numpy as np

from prednas.pipeline.config import DEFAULT_FOLDS
from prednas.predictors.fit import FitConfig, Predictor, fit_predictor, kendall_tau


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the setting.

    Predictors are tiny (a GCN on 8 x 7 matrices, batches of 16): a second thread gains
    nothing, and when the cores are shared with other steps, synchronising threads makes
    a fit up to fifty times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_config(options: dict[str, Any]) -> FitConfig:
    """The ``FitConfig`` of a config's ``predictor`` section (cv_folds and aux_target aside)."""
    names = {f.name for f in fields(FitConfig)}
    return FitConfig(**{k: v for k, v in options.items() if k in names})


def cross_validate(space: Any, x: np.ndarray, y: np.ndarray, config: FitConfig, *, folds: int, seed: int,
                   rng: np.random.Generator) -> dict[str, float]:
    """Kendall tau and RMSE of out-of-fold predictions (folds drawn by ``rng``)."""
    order = rng.permutation(len(y))
    predicted = np.empty(len(y))
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        model = fit_predictor(space, x[train], y[train], seed=seed, config=config)
        predicted[fold] = model.predict(x[fold])
    return {"cv_kendall_tau": kendall_tau(predicted, y), "cv_rmse": float(np.sqrt(np.mean((predicted - y) ** 2)))}


def fit_with_cv(space: Any, x: np.ndarray, y: np.ndarray, options: dict[str, Any], *, seed: int,
                cv_seed: int) -> tuple[Predictor, dict[str, float]]:
    """A predictor fitted on all of (x, y) and its cross-validated quality (empty with cv_folds 0)."""
    config = fit_config(options)
    folds = min(int(options.get("cv_folds", DEFAULT_FOLDS)), len(y))
    quality = {}
    if folds >= 2:
        quality = cross_validate(space, x, y, config, folds=folds, seed=seed, rng=np.random.default_rng(cv_seed))
    predictor = fit_predictor(space, x, y, seed=seed, config=config)
    quality["train_kendall_tau"] = kendall_tau(predictor.predict(x), y)
    return predictor, quality
