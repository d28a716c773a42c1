"""Evaluators turn an architecture into a measured triplet (accuracy, cost, report)."""

from prednas.evaluators.base import Evaluation, Evaluator

__all__ = ["Evaluation", "Evaluator"]
