"""The final step: choose the best measured architecture, report it and close the loop in MLflow.

Paper Sec. III-D: the top K of the pool are measured and "the best model" among them is the
result; on NAS-Bench-201 (Table II) the answer is the best of all N + K queries. Here the
candidates are every triplet the search knows under the sample config (this run's and
the warm start's) plus the top K; when the top-K stage uses another (longer) recipe only
its results are comparable, so only they are candidates.

The parent run receives the final metrics, the plots (predicted vs measured on the top K,
the search trajectory, accuracy vs cost with the Pareto front) and ``final/report.json``.
The main predictor version of this run becomes the registered model's ``champion`` when
its result beats the best recorded for the same evaluator config (kept in the triplet
store at ``artifacts/champions/{space}/{config_hash}.json``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.pipeline import exchange
from prednas.pipeline.context import SearchContext, stage
from prednas.store.triplet import Triplet

TABLE_ROWS = 10


def select(context: SearchContext, training: list[Triplet], topk: list[Triplet], picks: dict[str, Any],
           versions: dict[str, str]) -> dict[str, Any]:
    """The final choice, its metrics and figures logged on the parent run; returns the report."""
    spec = context.spec
    same_recipe = stage(spec, "sample").hash == stage(spec, "top-k").hash
    candidates = exchange.unique_by_key([*training, *topk] if same_recipe else topk)
    if not candidates:
        raise PredNASError("no measured architecture to choose from; the evaluate steps produced nothing")
    best = max(candidates, key=lambda t: (t.accuracy, -t.created_at))
    ours = [t for t in exchange.unique_by_key([*training, *topk]) if t.run_id == context.parent_run_id]
    metrics = {"best_accuracy": best.accuracy, **{f"best_{k}": v for k, v in best.cost.items()},
               **{f"best_{k}": v for k, v in best.report.items()},
               "queries": float(len({t.arch_id + t.stage for t in ours})),
               "warm_start": float(len([t for t in training if t.run_id != context.parent_run_id])),
               "wall_time_s": time.time() - context.started_at, "pool_size": float(picks.get("pool_size", 0))}
    measured, predicted = _topk_pairs(topk, picks)
    if len(measured) >= 2:
        from prednas.predictors.fit import kendall_tau

        metrics["topk_kendall_tau"] = kendall_tau(np.array(predicted), np.array(measured))
    tracker = context.run.tracker()
    champion = _crown(context, best, versions.get("accuracy"), tracker)
    report = _report(context, best, candidates, metrics, versions, champion)
    tracker.log_final(context.parent_run_id, metrics, _figures(spec, candidates, best, measured, predicted),
                      report=report)
    return report


def _topk_pairs(topk: list[Triplet], picks: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Measured and predicted accuracy of each top-K architecture (matched by architecture JSON)."""
    archs, scores = picks.get("picks", []), picks.get("predicted", [])
    predicted = {json.dumps(a, sort_keys=True): p for a, p in zip(archs, scores, strict=True)}
    pairs = [(t.accuracy, predicted[key]) for t in exchange.unique_by_key(topk)
             if (key := json.dumps(t.arch, sort_keys=True)) in predicted]
    return [m for m, _ in pairs], [p for _, p in pairs]


def _figures(spec: Any, candidates: list[Triplet], best: Triplet, measured: list[float],
             predicted: list[float]) -> dict[str, Any]:
    from prednas.tracking import plots

    cost_name = spec.cost.metric if spec.cost else "flops"
    figures = plots.search_figures(candidates, cost_name=cost_name, chosen_trial=best.trial) \
        if all(cost_name in t.cost for t in candidates) else {}
    if len(measured) >= 2:
        figures["predicted_vs_measured"] = plots.predicted_vs_measured(measured, predicted)
    return figures


def _crown(context: SearchContext, best: Triplet, version: str | None, tracker: Any) -> bool:
    """Make this run's accuracy predictor the champion when its result is the best so far."""
    if version is None:
        return False
    from prednas.tracking import model_name

    store = context.run.store()
    key = f"artifacts/champions/{context.spec.space}/{best.config_hash}.json"
    record = json.loads(store.get_bytes(key)) if store.exists(key) else {}
    if record.get("run_id") != context.parent_run_id and record.get("accuracy", -np.inf) >= best.accuracy:
        return False
    tracker.set_alias(model_name(context.spec.space, "accuracy"), "champion", version)
    store.put_bytes(key, json.dumps({"accuracy": best.accuracy, "version": str(version), "arch_id": best.arch_id,
                                     "run_id": context.parent_run_id}).encode())
    return True


def _report(context: SearchContext, best: Triplet, candidates: list[Triplet], metrics: dict[str, float],
            versions: dict[str, str], champion: bool) -> dict[str, Any]:
    from prednas.tracking.tracker import redact

    ranked = sorted(candidates, key=lambda t: (-t.accuracy, t.created_at))[:TABLE_ROWS]
    return {"run_key": context.run_key, "parent_run_id": context.parent_run_id,
            "tracking_uri": redact(context.spec.tracking_uri), "experiment": context.spec.experiment,
            "store_uri": context.spec.store_uri, "space": context.spec.space, "evaluator": best.evaluator,
            "best": _row(best), "metrics": metrics, "predictor_versions": versions, "champion": champion,
            "table": [_row(t) for t in ranked]}


def _row(t: Triplet) -> dict[str, Any]:
    return {"arch": t.arch, "arch_id": t.arch_id, "stage": t.stage, "accuracy": t.accuracy, "cost": t.cost,
            "report": t.report, "trial": t.trial, "measured_by": t.run_id}


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (shown by the Kubeflow UI)."""
    best = report["best"]
    costs = sorted(best["cost"])
    extras = sorted(best["report"])
    head = ["#", "architecture", "stage", "accuracy", *extras, *costs]
    lines = [f"**Best**: `{json.dumps(best['arch'], sort_keys=True)}`, accuracy {best['accuracy']:.4g}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(report["table"], 1):
        cells = [str(i), f"`{json.dumps(row['arch'], sort_keys=True)}`", row["stage"], f"{row['accuracy']:.4g}",
                 *(f"{row['report'].get(k, float('nan')):.4g}" for k in extras),
                 *(f"{row['cost'].get(k, float('nan')):.4g}" for k in costs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
