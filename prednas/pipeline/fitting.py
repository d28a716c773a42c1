"""Predictor fit with cross-validated quality (paper Sec. III-C; Sec. IV reports Kendall's tau).

``fit_with_cv`` fits on every triplet with ``prednas.predictors.fit.fit_predictor`` and
reports how well that recipe ranks unseen architectures: k-fold cross-validation, each
fold fitted from scratch on the others, Kendall's tau and RMSE over the pooled
out-of-fold predictions (pooling keeps tau meaningful when folds hold only a handful).

``fit_main_and_aux`` adds the auxiliary (cost) predictor the way
``prednas.search.constrained`` fits it: on the log of the cost, and for an analytic cost
(MACs, FLOPs, params) on the triplets plus random architectures whose cost is computed.
Its quality is Kendall's tau on fresh random architectures (analytic costs) or on the
triplets (a measured latency).

The main predictor is an ensemble of ``predictor.members`` networks (default: 3 for a size
space, ``prednas.search.constrained.SIZE_MEMBERS``; 1 for a topology space). Cross-validation
measures the recipe with one network per fold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import numpy as np

from prednas.pipeline.config import DEFAULT_FOLDS
from prednas.predictors.fit import Ensemble, FitConfig, Predictor, fit_ensemble, fit_predictor, kendall_tau


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


def ensemble_size(options: dict[str, Any], space: Any) -> int:
    """``predictor.members``, by default 3 for a size space and 1 for a topology space."""
    from prednas.search.constrained import SIZE_MEMBERS

    return int(options.get("members", SIZE_MEMBERS if getattr(space, "kind", None) == "size" else 1))


def cross_validate(space: Any, x: np.ndarray, y: np.ndarray, config: FitConfig, *, folds: int, seed: int,
                   rng: np.random.Generator, init: dict[str, Any] | None = None) -> dict[str, float]:
    """Kendall tau and RMSE of out-of-fold predictions (folds drawn by ``rng``)."""
    order = rng.permutation(len(y))
    predicted = np.empty(len(y))
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        model = fit_predictor(space, x[train], y[train], seed=seed, config=config, init=init)
        predicted[fold] = model.predict(x[fold])
    return {"cv_kendall_tau": kendall_tau(predicted, y), "cv_rmse": float(np.sqrt(np.mean((predicted - y) ** 2)))}


def fit_main_and_aux(space: Any, archs: list[Any], accuracy: np.ndarray, costs: list[dict[str, float]],
                     options: dict[str, Any], *, aux_metric: str | None, seed: int, cv_seed: int,
                     init: dict[str, Any] | None = None,
                     ) -> tuple[Predictor | Ensemble, Predictor | None, dict[str, dict[str, float]]]:
    """The main predictor with its cross-validated quality, and the auxiliary one when ``aux_metric`` is set.

    ``init`` (pretrained weights) starts every main network, the cross-validation folds' too.
    """
    from prednas.search import constrained

    x = np.stack([space.encode(a) for a in archs])
    if aux_metric is None:
        main, quality = fit_with_cv(space, x, accuracy, options, seed=seed, cv_seed=cv_seed, init=init)
        return main, None, {"accuracy": quality}
    config = fit_config(options)
    quality = _cv_quality(space, x, accuracy, options, config, seed=seed, cv_seed=cv_seed, init=init)
    records = [constrained.Measured(a, float(y), c) for a, y, c in zip(archs, accuracy, costs, strict=True)]
    main, aux = constrained.fit_predictors(space, records, aux_metric=aux_metric, seed=seed, config=config,
                                           members=ensemble_size(options, space), init=init)
    quality["train_kendall_tau"] = kendall_tau(main.predict(x), accuracy)
    return main, aux, {"accuracy": quality, aux_metric: _aux_quality(space, aux, records, aux_metric, cv_seed)}


def _aux_quality(space: Any, aux: Predictor, records: list[Any], metric: str, seed: int,
                 held_out: int = 500) -> dict[str, float]:
    """Kendall tau of the auxiliary predictor: on fresh random architectures for an analytic cost."""
    from prednas.search import constrained

    if metric in constrained.ANALYTIC:
        rng = np.random.default_rng([seed, 7])
        archs = [space.sample(rng) for _ in range(held_out)]
        truth = np.log([space.cost(a)[metric] for a in archs])
        return {"heldout_kendall_tau": kendall_tau(aux.predict_archs(archs), truth)}
    truth = np.log(constrained.metric_values(space, records, metric))
    return {"train_kendall_tau": kendall_tau(aux.predict_archs([r.arch for r in records]), truth)}


def _cv_quality(space: Any, x: np.ndarray, y: np.ndarray, options: dict[str, Any], config: FitConfig, *,
                seed: int, cv_seed: int, init: dict[str, Any] | None = None) -> dict[str, float]:
    folds = min(int(options.get("cv_folds", DEFAULT_FOLDS)), len(y))
    if folds < 2:
        return {}
    return cross_validate(space, x, y, config, folds=folds, seed=seed, rng=np.random.default_rng(cv_seed), init=init)


def fit_with_cv(space: Any, x: np.ndarray, y: np.ndarray, options: dict[str, Any], *, seed: int,
                cv_seed: int, init: dict[str, Any] | None = None) -> tuple[Predictor | Ensemble, dict[str, float]]:
    """A predictor fitted on all of (x, y) and its cross-validated quality (empty with cv_folds 0)."""
    config = fit_config(options)
    quality = _cv_quality(space, x, y, options, config, seed=seed, cv_seed=cv_seed, init=init)
    predictor = fit_ensemble(space, x, y, seed=seed, members=ensemble_size(options, space), config=config,
                             init=init)
    quality["train_kendall_tau"] = kendall_tau(predictor.predict(x), y)
    return predictor, quality
