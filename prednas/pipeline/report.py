"""The last steps: choose the best measured architecture, report it and close the loop in MLflow.

Paper Sec. III-D: the top K of the pool are measured and "the best model" among them is the
result; on NAS-Bench-201 (Table II) the answer is the best of all N + K queries. Here the
candidates are every triplet the search knows (this run's, every round's, and the warm
start's); when the top-K stage uses another (longer) recipe only its results are
comparable, so only they are candidates. The same rule gives the best-so-far logged after
each round (``best_of``), so the parent's ``best_accuracy`` against ``queries`` is the
search trajectory.

The parent run receives the final metrics, the plots (predicted vs measured on the top K,
the search trajectory, accuracy vs cost with the Pareto front) and ``final/report.json``.
The main predictor version of this run becomes the registered model's ``champion`` when
its result beats the best recorded for the same evaluator config (kept in the triplet
store at ``artifacts/champions/{space}/{config_hash}.json``).

With ``final_m`` > 0, ``plan_final`` picks the best m distinct architectures by the search
signal for the final stage (retrained with the final recipe) and ``select_final`` then
names the best by its final result. The champion stays decided by the top-K stage, whose
results the predictor proposed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.pipeline import exchange
from prednas.pipeline.context import SearchContext, stage
from prednas.pipeline.state import SearchState
from prednas.store.triplet import Triplet

TABLE_ROWS = 10


def _candidates(spec: Any, known: list[Triplet]) -> tuple[list[Triplet], list[Triplet]]:
    """The triplets ``select`` chooses among, and the others (another recipe, or outside the cost window).

    When the top-K stage has its own recipe only its results are comparable, so only they
    are candidates. Under a cost target only architectures inside the window are
    candidates (the random samples need not be), unless none is: then every one stays.
    """
    known = exchange.unique_by_key(known)
    topk_hash = stage(spec, "top-k").hash
    if stage(spec, "sample").hash == topk_hash:
        candidates, others = known, []
    else:
        candidates = [t for t in known if t.config_hash == topk_hash]
        others = [t for t in known if t.config_hash != topk_hash]
    if spec.cost is not None:
        inside = [t for t in candidates if _in_window(spec.cost, t)]
        if inside:
            keys = {t.key for t in inside}
            return inside, [*(t for t in candidates if t.key not in keys), *others]
    return candidates, others


def best_of(spec: Any, known: list[Triplet]) -> Triplet | None:
    """What ``select`` would choose among ``known`` (None when nothing is a candidate)."""
    candidates, _ = _candidates(spec, known)
    return _ranked(candidates)[0] if candidates else None


def _in_window(cost: Any, triplet: Triplet) -> bool:
    value = triplet.cost.get(cost.metric)
    return value is not None and abs(value - cost.target) <= cost.window


def _ranked(triplets: list[Triplet]) -> list[Triplet]:
    """Best first by the measured signal; ties go to the earlier measurement (as ``select`` breaks them)."""
    return sorted(triplets, key=lambda t: (-t.accuracy, t.created_at))


def select(context: SearchContext, state: SearchState, topk: list[Triplet]) -> dict[str, Any]:
    """The final choice, its metrics and figures logged on the parent run; returns the report.

    ``state`` is the search state after the last round's search, ``topk`` what that round measured.
    """
    from prednas.pipeline.steps import progress_point

    spec = context.spec
    state = state.extended(topk)
    candidates, _ = _candidates(spec, state.known)
    if not candidates:
        raise PredNASError("no measured architecture to choose from; the evaluate steps produced nothing")
    best = _ranked(candidates)[0]
    ours = [t for t in state.known if t.run_id == context.parent_run_id]
    point = progress_point(context, state.known, state.round)
    trajectory = [*state.trajectory, point]
    metrics = {**_best_metrics("best", _row(best)),
               "queries": float(len({t.arch_id + t.stage for t in ours})),
               "warm_start": float(len([t for t in state.known if t.run_id != context.parent_run_id])),
               "rounds": float(state.round), "wall_time_s": time.time() - context.started_at,
               "pool_size": float(state.stats[-1].get("pool_size", 0)) if state.stats else 0.0}
    measured, predicted = _topk_pairs(state.known, state.picks)
    if len(measured) >= 2:
        from prednas.predictors.fit import kendall_tau

        metrics["topk_kendall_tau"] = kendall_tau(np.array(predicted), np.array(measured))
    tracker = context.run.tracker()
    tracker.log_progress(context.parent_run_id, point)
    versions = state.versions[-1] if state.versions else {}
    champion = _crown(context, best, versions.get("accuracy"), tracker)
    report = _report(context, best, candidates, metrics, versions, champion)
    report["rounds"] = trajectory
    tracker.log_final(context.parent_run_id, metrics, _figures(spec, candidates, best, measured, predicted),
                      report=report)
    tracker.mark_best(context.parent_run_id, best)
    return report


def _best_metrics(prefix: str, row: dict[str, Any]) -> dict[str, float]:
    """A report row's accuracy, costs and reported figures as ``{prefix}_{name}`` metrics."""
    return {f"{prefix}_accuracy": row["accuracy"], **{f"{prefix}_{k}": v for k, v in row["cost"].items()},
            **{f"{prefix}_{k}": v for k, v in row["report"].items()}}


def plan_final(context: SearchContext, state: SearchState, topk: list[Triplet]) -> tuple[list[Triplet], list[str]]:
    """The best ``final_m`` distinct architectures by the search signal, and the final stage's shards.

    Ranked as ``select`` ranks its candidates; when the top-K stage has its own recipe the
    sample stage's results (not comparable with it) follow the top K. Nothing when final_m is 0.
    """
    spec = context.spec
    if spec.final_m == 0:
        return [], []
    candidates, others = _candidates(spec, [*state.known, *topk])
    space = stage(spec, "sample").space
    chosen, keys = [], set()
    for t in [*_ranked(candidates), *_ranked(others)]:
        key = space.equivalence_key(space.from_dict(t.arch))
        if key not in keys:
            keys.add(key)
            chosen.append(t)
        if len(chosen) == spec.final_m:
            break
    return chosen, exchange.make_shards("final", [t.arch for t in chosen], spec.shards)


def select_final(context: SearchContext, selected: dict[str, Any], finalists: list[Triplet],
                 final: list[Triplet]) -> dict[str, Any]:
    """Name the best architecture by its final-stage result, log it on the parent run; returns the report.

    The top-K stage's choice stays in the report (``topk_best``) and in the metrics
    (``topk_best_*``); ``best_*`` now describe the final stage's best.
    """
    measured = _ranked(exchange.unique_by_key(t for t in final if t.stage == "final"))
    if not measured:
        raise PredNASError(f"the final stage measured nothing; expected final_m={context.spec.final_m} results")
    best, signal = measured[0], {t.arch_id: t.accuracy for t in finalists}
    kept = {k: v for k, v in selected["metrics"].items() if not k.startswith("best_")}
    metrics = {**kept, **_best_metrics("topk_best", selected["best"]), **_best_metrics("best", _row(best)),
               "final_queries": float(len([t for t in measured if t.run_id == context.parent_run_id])),
               "wall_time_s": time.time() - context.started_at}
    pairs = [(signal[t.arch_id], t.accuracy) for t in measured if t.arch_id in signal]
    if len(pairs) >= 2:
        from prednas.predictors.fit import kendall_tau

        metrics["final_kendall_tau"] = kendall_tau(*(np.array(column) for column in zip(*pairs, strict=True)))
    report = {**selected, "best": _row(best), "evaluator": best.evaluator, "topk_best": selected["best"],
              "topk_evaluator": selected["evaluator"], "metrics": metrics,
              "final_table": [{**_row(t), "signal": signal.get(t.arch_id)} for t in measured]}
    tracker = context.run.tracker()
    tracker.log_final(context.parent_run_id, metrics, report=report)
    tracker.mark_best(context.parent_run_id, best)
    return report


def _topk_pairs(known: list[Triplet], picks: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Measured and predicted accuracy of each top-K pick (matched by architecture JSON), every round."""
    predicted = {json.dumps(p["arch"], sort_keys=True): p["predicted"] for p in picks}
    pairs = [(t.accuracy, predicted[key]) for t in exchange.unique_by_key(known)
             if t.stage == "top-k" and (key := json.dumps(t.arch, sort_keys=True)) in predicted]
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

    ranked = _ranked(candidates)[:TABLE_ROWS]
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
    lines = [f"**Best**: `{json.dumps(best['arch'], sort_keys=True)}`, accuracy {best['accuracy']:.4g}"]
    if "topk_best" in report:
        choice = report["topk_best"]
        lines += ["", f"**Top-K stage's choice**: `{json.dumps(choice['arch'], sort_keys=True)}`, accuracy "
                      f"{choice['accuracy']:.4g}", "", "Final stage:",
                  *_rows(report["final_table"], head, extras, costs), "", "Sample and top-K stages:"]
    lines += ["", *_rows(report["table"], head, extras, costs)]
    return "\n".join(lines) + "\n"


def _rows(rows: list[dict[str, Any]], head: list[str], extras: list[str], costs: list[str]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(rows, 1):
        cells = [str(i), f"`{json.dumps(row['arch'], sort_keys=True)}`", row["stage"], f"{row['accuracy']:.4g}",
                 *(f"{row['report'].get(k, float('nan')):.4g}" for k in extras),
                 *(f"{row['cost'].get(k, float('nan')):.4g}" for k in costs)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
