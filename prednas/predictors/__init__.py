"""Predictors: the GCN (topology spaces) and MLP (size spaces) of paper Table I."""

from prednas.predictors.fit import FitConfig, Predictor, fit_predictor, kendall_tau

__all__ = ["FitConfig", "Predictor", "fit_predictor", "kendall_tau"]
