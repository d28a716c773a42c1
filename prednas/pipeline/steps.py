"""The pipeline's steps as library functions: PredNAS's single pass (paper Fig. 2, Sec. III).

``sample`` N architectures -> ``evaluate`` them shard by shard -> ``fit_predictors`` (main
and auxiliary, Sec. III-C) -> ``search`` (Algorithm 1 over an alpha grid, Eq. 2-4) ->
``evaluate`` the top K -> ``select`` the best and report -> (with ``final_m`` > 0)
``evaluate`` the best m again with the final recipe -> ``select_final`` (both in
``prednas.pipeline.report``); ``close`` ends the MLflow run.
Each takes and returns JSON-able values and file paths, so one function runs from
Python (``prednas.pipeline.inprocess``), the CLI and a KFP component alike.

The triplet store is the system of record: ``evaluate`` looks every architecture up
before measuring it, writes each new triplet before logging it to MLflow and before the
step succeeds, and never measures an architecture already stored under the same
evaluator config. A rerun of the same run (same run key, e.g. a KFP retry) re-plans the
same architectures and reuses what it stored; a new run skips everything other runs
measured and fits its predictors on it too (warm start).

Deviations from the paper: the auxiliary predictor is fitted only when it is used (an
alpha above 0, or a window on a measured latency), on the log of its cost as in
``prednas.search.constrained``; a pool shorter than K is topped up with
random unseen architectures (as ``prednas.search.methods.run_prednas_paper`` does); the
final choice is the best measured architecture the search knows (this run's and the warm
start's when both stages share one evaluator config, else the top K), as in Table II.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.pipeline import exchange
from prednas.pipeline.config import SearchSpec
from prednas.pipeline.context import SearchContext, Stage, stage
from prednas.store.triplet import Triplet


def sample(spec: SearchSpec, *, run_key: str) -> tuple[SearchContext, list[str]]:
    """Open (or find again) the MLflow parent run and draw N architectures no other run measured."""
    started = time.time()
    if not run_key:
        raise PredNASError("run key is empty; expected the pipeline job id or a name for this run")
    first = stage(spec, "sample")
    run = exchange.RunRef(spec.store_uri, spec.tracking_uri, spec.experiment)
    tracker, store = run.tracker(), run.store()
    tags = {"prednas.space": spec.space, "prednas.evaluator": spec.evaluator["name"], "prednas.config_hash": first.hash}
    parent = tracker.start_parent(spec.run_name or f"prednas-{spec.space}-{run_key[:12]}", spec.to_dict(), tags,
                                  key=run_key)
    known = _keys(first.space, [t.arch for t in store.list(spec.space, first.hash) if t.run_id != parent])
    archs = _draw_unseen(first.space, known, exchange.rng_for(spec.seed, "sample"), spec.n)
    if len(archs) < spec.n:
        raise PredNASError(f"space {spec.space!r} has only {len(archs)} unmeasured architectures left; n={spec.n}")
    context = SearchContext(spec, run_key, parent, started)
    return context, exchange.make_shards("sample", [first.space.to_dict(a) for a in archs], spec.shards)


def _keys(space: Any, archs: list[dict[str, Any]]) -> set[str]:
    """Equivalence keys of architecture dicts."""
    return {space.equivalence_key(space.from_dict(a)) for a in archs}


def _draw_unseen(space: Any, known: set[str], rng: np.random.Generator, count: int,
                 max_draws: int = 200_000) -> list[Any]:
    """Up to ``count`` random architectures of distinct equivalence classes, none in ``known``."""
    keys = set(known)
    out: list[Any] = []
    for _ in range(max_draws):
        if len(out) >= count:
            break
        arch = space.sample(rng)
        key = space.equivalence_key(arch)
        if key not in keys:
            keys.add(key)
            out.append(arch)
    return out


def evaluate(context: SearchContext, shard: str, *, accelerator: str = "") -> tuple[list[Triplet], dict[str, float]]:
    """Measure one shard: stored architectures are reused, new ones stored before they are logged.

    ``accelerator`` names the device resource the step was given ('' on CPU); an evaluator
    that takes a ``device`` then runs on CUDA.
    """
    started = time.time()
    stage_name, _, archs = exchange.parse_shard(shard)
    if stage_name not in context.spec.stage_evaluators:
        raise PredNASError(f"shard stage {stage_name!r}; expected one of {', '.join(context.spec.stage_evaluators)}")
    st = stage(context.spec, stage_name, accelerator)
    run = context.run
    store = run.store()
    results, measured = [], 0
    for data in archs:
        triplet = _stored_or_claimed(store, st, data, context, stage_name)
        if triplet is None:
            arch = st.space.from_dict(data)
            triplet = Triplet.create(st.space, arch, st.config, st.evaluator.evaluate(st.space, arch),
                                     stage=stage_name, run_id=context.parent_run_id)
            store.put(triplet)
            _release(store, st, triplet, context)
            measured += 1
        results.append(triplet)
    if results:
        run.tracker().log_triplets(context.parent_run_id, results)
    metrics = {"evaluated": float(measured), "reused": float(len(results) - measured),
               "seconds": time.time() - started}
    return results, metrics


def _stored_or_claimed(store: Any, st: Stage, data: dict[str, Any], context: SearchContext,
                       stage_name: str) -> Triplet | None:
    """A stored trial to reuse (this run's first), or None once this run may measure the architecture."""
    from prednas.evaluators.registry import evaluator_entry
    from prednas.spaces import arch_id

    ident = arch_id(st.space, st.space.from_dict(data))
    ttl = evaluator_entry(context.spec.stage_evaluators[stage_name]["name"]).claim_ttl_s
    deadline = time.time() + ttl
    while True:
        trials = store.get(st.space.name, st.hash, ident)
        if trials:
            own = [t for t in trials if t.run_id == context.parent_run_id]
            return (own or trials)[0]
        if ttl <= 0 or store.claim(st.space.name, st.hash, ident, context.parent_run_id, ttl_s=ttl):
            return None
        if time.time() > deadline:  # the other run's lease is as old as its ttl: measure it here too
            return None
        time.sleep(min(10.0, ttl / 20))


def _release(store: Any, st: Stage, triplet: Triplet, context: SearchContext) -> None:
    from prednas.evaluators.registry import evaluator_entry

    if evaluator_entry(context.spec.stage_evaluators[triplet.stage]["name"]).claim_ttl_s > 0:
        store.release(st.space.name, st.hash, triplet.arch_id, context.parent_run_id)


def fit_predictors(context: SearchContext, sampled: list[Triplet]) -> dict[str, Any]:
    """Fit the main (and auxiliary) predictor on the sampled triplets and every other run's (warm start).

    Returns ``training`` (the triplets), ``main``/``aux`` (state bytes, aux None when not
    fitted), ``metrics`` (their quality: cross-validated Kendall tau and RMSE) and ``versions``.
    """
    from prednas.pipeline.fitting import fit_main_and_aux, one_thread
    from prednas.store.triplet import training_hash

    spec, run = context.spec, context.run
    st = stage(spec, "sample")
    stored = [t for t in run.store().list(spec.space, st.hash)
              if t.run_id != context.parent_run_id or t.stage == "sample"]  # not our own top K of an earlier try
    training = [t for t in exchange.unique_by_key([*stored, *sampled]) if t.config_hash == st.hash]
    aux_metric = spec.aux_target if spec.needs_aux else None
    tracker = run.tracker()
    digest = tracker.log_training_set(context.parent_run_id, training)
    with one_thread():
        main, aux, quality = fit_main_and_aux(
            st.space, [st.space.from_dict(t.arch) for t in training], np.array([t.accuracy for t in training]),
            [t.cost for t in training], spec.predictor, aux_metric=aux_metric,
            seed=exchange.seed_for(spec.seed, "fit"), cv_seed=exchange.seed_for(spec.seed, "cv"))
    fitted = {"accuracy": main.state_bytes(), **({aux_metric: aux.state_bytes()} if aux is not None else {})}
    versions = {target: tracker.log_predictor(context.parent_run_id, state, space=spec.space, target=target,
                                              training_hash=digest, metrics=quality[target])
                for target, state in fitted.items()}
    assert digest == training_hash(training)
    metrics = {f"{target}_{k}": v for target, q in quality.items() for k, v in q.items()}
    return {"training": training, "main": fitted["accuracy"], "aux": fitted.get(aux_metric or ""),
            "metrics": {**metrics, "training_size": float(len(training))}, "versions": versions}


def search(context: SearchContext, main: bytes, aux: bytes | None, training: list[Triplet]) -> tuple[dict, list[str]]:
    """Algorithm 1 over the alpha grid; returns the ranked pool and the top-K shards."""
    from prednas.pipeline.fitting import one_thread
    from prednas.predictors.fit import Predictor
    from prednas.search.constrained import SIZE_GRADIENT, ConstrainedConfig, constrained_search
    from prednas.search.gradient import CostWindow, GradientConfig, alpha_grid_search

    spec = context.spec
    st = stage(spec, "sample")
    main_p = Predictor.from_bytes(st.space, main)
    aux_p = Predictor.from_bytes(st.space, aux) if aux else None
    if spec.needs_aux and aux_p is None:
        raise PredNASError("the search needs the auxiliary predictor but the fit step produced none")
    options = dict(spec.gradient)
    penalty = options.pop("penalty", "window")
    base = SIZE_GRADIENT if getattr(st.space, "kind", None) == "size" else GradientConfig()
    config = replace(base, **options)
    rng = exchange.rng_for(spec.seed, "search")
    with one_thread():
        if spec.cost is None:
            pool = alpha_grid_search(st.space, main_p, aux_p, list(spec.alphas), rng=rng, config=config)
        else:  # a latency window is judged by the auxiliary predictor, an analytic one by the cost model
            window = CostWindow(spec.cost.metric, spec.cost.target, spec.cost.window)
            pool = constrained_search(st.space, main_p, aux_p, window, rng=rng, aux_metric=spec.aux_target,
                                      config=ConstrainedConfig(gradient=config, alphas=spec.alphas, penalty=penalty))
    known = _keys(st.space, [t.arch for t in training])
    picks = _unseen(st.space, known, pool.archs)[: spec.k]
    topped = _draw_unseen(st.space, known | {st.space.equivalence_key(a) for a in picks},
                          exchange.rng_for(spec.seed, "top-up"), spec.k - len(picks)) if len(picks) < spec.k else []
    chosen = [*picks, *topped]
    predicted = main_p.predict_archs(chosen) if chosen else np.zeros(0)
    result = {"picks": [st.space.to_dict(a) for a in chosen], "predicted": [float(p) for p in predicted],
              "from_pool": len(picks), "topped_up": len(topped), "pool_size": len(pool),
              "stats": {k: float(v) for k, v in pool.stats.items()}}
    return result, exchange.make_shards("top-k", result["picks"], spec.shards)


def _unseen(space: Any, known: set[str], archs: list[Any]) -> list[Any]:
    """``archs`` less those in ``known`` equivalence classes, one per class, order kept."""
    keys = set(known)
    out = []
    for arch in archs:
        key = space.equivalence_key(arch)
        if key not in keys:
            keys.add(key)
            out.append(arch)
    return out


def close(tracking_uri: str, experiment: str, run_key: str, state: str) -> str:
    """End the parent run of ``run_key``: FINISHED when the pipeline succeeded, else FAILED or KILLED."""
    status = {"SUCCEEDED": "FINISHED", "CANCELLED": "KILLED", "CANCELED": "KILLED"}.get(state.upper(), "FAILED")
    tracker = exchange.RunRef("", tracking_uri, experiment).tracker()
    parent = tracker.start_parent(f"prednas-{run_key[:12]}", {}, {}, key=run_key)
    tracker.close(parent, status)
    return status
