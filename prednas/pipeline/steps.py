"""The pipeline's steps as library functions: PredNAS (paper Fig. 2, Sec. III) with K spent in rounds.

``sample`` N architectures -> ``evaluate`` them shard by shard -> for each of R rounds:
``fit_predictors`` (main and auxiliary, Sec. III-C, on everything measured so far) ->
``search`` (propose this round's share of K) -> ``evaluate`` those -> ``select`` the best
and report -> (with ``final_m`` > 0) ``evaluate`` the best m again with the final recipe ->
``select_final`` (both in ``prednas.pipeline.report``); ``close`` ends the MLflow run.
Each takes and returns JSON-able values and file paths, so one function runs from
Python (``prednas.pipeline.inprocess``), the CLI, the benchmarks and a KFP component alike.

The rounds carry a *search state* (``prednas.pipeline.state``): every triplet known so far
(this run's and the warm start's), the picks of each round with their predictions, the
predictor versions and the best-so-far trajectory. Round r's fit trains on the state's
triplets of the sample evaluator's config, so later rounds learn from earlier rounds' results.

``search`` scores every equivalence class when the space can be enumerated within
``exhaustive_limit`` (no alpha above 0, and a cost window, if any, on an analytic cost),
and runs Algorithm 1 over the alpha grid (with the cost window for size spaces) otherwise.
With ``pretrain`` > 0 each fit starts from a predictor pretrained to rank the space by
analytic MACs (``prednas.search.acquisition.pretrained_state``). With ``refine`` > 0 the
last round first proposes, best predicted first, up to that many unmeasured architectures
of its pool one position (a layer, an edge) away from the best one measured so far: the
rounds before find the region, the last one searches around its best point.

The triplet store is the system of record: ``evaluate`` looks every architecture up
before measuring it, writes each new triplet before logging it to MLflow and before the
step succeeds, and never measures an architecture already stored under the same
evaluator config. A rerun of the same run (same run key, e.g. a KFP retry) re-plans the
same architectures and reuses what it stored; a new run skips everything other runs
measured and fits its predictors on it too (warm start).

Deviations from the paper: the K queries are spent in rounds (``rounds: 1``,
``exhaustive_limit: 0`` and ``pretrain: 0`` give the paper's single pass); the auxiliary
predictor is fitted only when it is used (an alpha above 0, or a window on a measured
latency), on the log of its cost as in ``prednas.search.constrained``; under a cost window
on an analytic cost the N samples are drawn inside it (``cost.sample_in_window: false``
draws them from the whole space; ``check_samples`` draws them once before anything is opened,
so a window too narrow for N fails first); a pool shorter than the round's share is topped
up with random unseen architectures, drawn inside that window too (a round whose window
has no unseen architecture left proposes fewer); the final choice is the
best measured architecture the search knows (this run's and the warm start's when both
stages share one evaluator config, else the top K), as in Table II.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.pipeline import exchange
from prednas.pipeline.config import SearchSpec
from prednas.pipeline.context import SearchContext, Stage, stage
from prednas.pipeline.state import SearchState
from prednas.store.triplet import Triplet

log = logging.getLogger(__name__)

STORE_ENV = "PREDNAS_STORE_URI"  # the cluster's store, mapped into every step from the ConfigMap prednas-s3


def sample(spec: SearchSpec, *, run_key: str) -> tuple[SearchContext, list[str]]:
    """Open (or find again) the MLflow parent run and draw N architectures no other run measured."""
    from prednas.tracking.naming import search_name

    started = time.time()
    if not run_key:
        raise PredNASError("run key is empty; expected the pipeline job id or a name for this run")
    spec = cluster_store(spec)
    first = stage(spec, "sample")
    run = exchange.RunRef(spec.store_uri, spec.tracking_uri, spec.experiment)
    tracker, store = run.tracker(), run.store()
    tags = {"prednas.space": spec.space, "prednas.evaluator": spec.evaluator["name"], "prednas.config_hash": first.hash,
            "prednas.seed": str(spec.seed)}
    name = spec.run_name or search_name(spec.space, spec.evaluator, spec.seed, run_key)
    parent = tracker.start_parent(name, spec.to_dict(), tags, key=run_key)
    known = _keys(first.space, [t.arch for t in store.list(spec.space, first.hash) if t.run_id != parent])
    archs = _draw_unseen(first.space, known, exchange.rng_for(spec.seed, "sample"), spec.n,
                         _window_draw(spec, first.space, spec.n))
    if len(archs) < spec.n:
        raise PredNASError(f"space {spec.space!r} has only {len(archs)} unmeasured architectures left; n={spec.n}")
    context = SearchContext(spec, run_key, parent, started)
    return context, exchange.make_shards("sample", [first.space.to_dict(a) for a in archs], spec.shards)


def cluster_store(spec: SearchSpec) -> SearchSpec:
    """A spec that names no store gets the cluster's: ``PREDNAS_STORE_URI`` (ConfigMap ``prednas-s3``)."""
    import os

    if spec.store_uri:
        return spec
    store = os.environ.get(STORE_ENV, "").strip()
    if not store:
        raise PredNASError(f"store_uri is empty and {STORE_ENV} is not set; expected store_uri: s3://bucket/prefix "
                           f"in the config, or {STORE_ENV} in the ConfigMap prednas-s3 on the cluster")
    return replace(spec, store_uri=store)


def _keys(space: Any, archs: list[dict[str, Any]]) -> set[str]:
    """Equivalence keys of architecture dicts."""
    return {space.equivalence_key(space.from_dict(a)) for a in archs}


def check_samples(spec: SearchSpec) -> None:
    """Draw the sample stage's N architectures as ``sample`` does on an empty store, opening nothing.

    Under a cost window the samples keep to (``cost.sample_in_window``), a window too narrow
    for N fails here with the sample step's own error (``prednas.pipeline.local.preflight``),
    before any MLflow run is opened or anything measured. Costs are analytic: nothing trains.
    """
    from prednas.search.constrained import window_draw

    window = draw_window(spec)
    if window is None:
        return
    space = stage(spec, "sample").space
    draw = window_draw(space, window, spec.n)
    archs = _draw_unseen(space, set(), exchange.rng_for(spec.seed, "sample"), spec.n, draw)
    if len(archs) < spec.n:  # the draws landed in the window but repeat too few classes
        raise PredNASError(f"cost window {window.metric} {window.target:.4g} +- {window.delta:.4g} (cost.target, "
                           f"cost.window) gave {len(archs)} distinct architectures of space {spec.space!r} in "
                           f"{draw.draws} random draws, n={spec.n}; expected a wider cost.window, or "
                           "cost.sample_in_window: false")


def draw_window(spec: SearchSpec) -> Any:
    """The cost window random draws keep to: the target's, when on an analytic cost and
    ``cost.sample_in_window`` is not false (None: the whole space)."""
    from prednas.search.constrained import ANALYTIC
    from prednas.search.gradient import CostWindow

    cost = spec.cost
    if cost is None or not cost.sample_in_window or cost.metric not in ANALYTIC:
        return None
    return CostWindow(cost.metric, cost.target, cost.window)


def _window_draw(spec: SearchSpec, space: Any, count: int, *, strict: bool = True) -> Any:
    """A draw of ``count`` architectures inside ``draw_window`` (None: ``space.sample``); ``strict``: a
    window too narrow for them is an error, else the draw runs out (``WindowDraw``)."""
    from prednas.search.constrained import window_draw

    window = draw_window(spec)
    return None if window is None else window_draw(space, window, count, strict=strict)


def _draw_unseen(space: Any, known: set[str], rng: np.random.Generator, count: int, draw: Any = None) -> list[Any]:
    """Up to ``count`` random architectures of distinct equivalence classes, none in ``known``."""
    from prednas.search.history import draw_distinct

    return draw_distinct(space, known, rng, count, draw=draw)


def evaluate(context: SearchContext, shard: str, *, accelerator: str = "") -> tuple[list[Triplet], dict[str, float]]:
    """Measure one shard: stored architectures are reused, new ones stored before they are logged.

    ``accelerator`` names the device resource the step was given ('' on CPU); an evaluator
    that takes a ``device`` then runs on CUDA.
    """
    from prednas.pipeline.progress import arch_line, shard_prefix
    from prednas.tracking.naming import child_name

    started = time.time()
    stage_name, index, archs = exchange.parse_shard(shard)
    round_ = exchange.shard_round(shard)
    if stage_name not in context.spec.stage_evaluators:
        raise PredNASError(f"shard stage {stage_name!r}; expected one of {', '.join(context.spec.stage_evaluators)}")
    st = stage(context.spec, stage_name, accelerator)
    run = context.run
    store = run.store()
    results, measured = [], 0
    prefix = shard_prefix(stage_name, round_, index)
    for i, data in enumerate(archs, 1):
        name = child_name(data)
        triplet = _stored_or_claimed(store, st, data, context, stage_name)
        if triplet is None:
            log.info(arch_line(prefix, i, len(archs), "started", name))
            arch, begun = st.space.from_dict(data), time.time()
            triplet = Triplet.create(st.space, arch, st.config, st.evaluator.evaluate(st.space, arch),
                                     stage=stage_name, run_id=context.parent_run_id)
            store.put(triplet)
            _release(store, st, triplet, context)
            measured += 1
            log.info(arch_line(prefix, i, len(archs), "finished", name, triplet.accuracy, time.time() - begun))
        else:
            log.info(arch_line(prefix, i, len(archs), "reused", name, triplet.accuracy))
        results.append(triplet)
    if results:
        run.tracker().log_triplets(context.parent_run_id, results, round_=round_)
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
        if ttl <= 0:
            return None
        if store.claim(st.space.name, st.hash, ident, context.parent_run_id, ttl_s=ttl):
            if not store.get(st.space.name, st.hash, ident):
                return None
            # the holder stored it and let go between the look above and the claim: reuse it
            store.release(st.space.name, st.hash, ident, context.parent_run_id)
            continue
        if time.time() > deadline:  # the other run's lease is as old as its ttl: measure it here too
            return None
        time.sleep(min(10.0, ttl / 20))


def _release(store: Any, st: Stage, triplet: Triplet, context: SearchContext) -> None:
    from prednas.evaluators.registry import evaluator_entry

    if evaluator_entry(context.spec.stage_evaluators[triplet.stage]["name"]).claim_ttl_s > 0:
        store.release(st.space.name, st.hash, triplet.arch_id, context.parent_run_id)


def fit_predictors(context: SearchContext, new: list[Triplet], state: SearchState | None = None) -> dict[str, Any]:
    """Fit the main (and auxiliary) predictor of the next round on everything measured so far.

    ``new`` are the triplets measured since ``state`` (the sample stage's before round 1,
    then each round's top K); before round 1 (no state, or the sample step's empty one)
    the store's triplets of this evaluator config are added as the warm start. Returns
    ``state`` (the new search state), ``training`` (the triplets fitted on),
    ``main``/``aux`` (state bytes, aux None when not fitted), ``metrics`` (cross-validated
    Kendall tau and RMSE) and ``versions`` (registered versions).
    """
    from prednas.pipeline.fitting import fit_main_and_aux, one_thread
    from prednas.store.triplet import training_hash

    spec, run = context.spec, context.run
    st = stage(spec, "sample")
    state = state or SearchState()
    if state.round == 0:  # round 1: every other run's triplets of this evaluator config are the warm start
        stored = [t for t in run.store().list(spec.space, st.hash)
                  if t.run_id != context.parent_run_id or t.stage == "sample"]  # not our own top K of an earlier try
        state = state.extended(stored)
    state = state.extended(new)
    round_ = state.round + 1
    training = [t for t in state.known if t.config_hash == st.hash]
    tracker = run.tracker()
    point = progress_point(context, state.known, round_ - 1)
    tracker.log_progress(context.parent_run_id, point)
    digest = tracker.log_training_set(context.parent_run_id, training)
    aux_metric = spec.aux_target if spec.needs_aux else None
    with one_thread():
        init = _pretrained(context, st.space) if spec.pretrain else None
        main, aux, quality = fit_main_and_aux(
            st.space, [st.space.from_dict(t.arch) for t in training], np.array([t.accuracy for t in training]),
            [t.cost for t in training], spec.predictor, aux_metric=aux_metric, init=init,
            seed=exchange.seed_for(spec.seed, "fit", round_), cv_seed=exchange.seed_for(spec.seed, "cv", round_))
    fitted = {"accuracy": main.state_bytes(), **({aux_metric: aux.state_bytes()} if aux is not None else {})}
    versions = {target: tracker.log_predictor(context.parent_run_id, state_bytes, space=spec.space, target=target,
                                              training_hash=digest, metrics=quality[target])
                for target, state_bytes in fitted.items()}
    assert digest == training_hash(training)
    metrics = {f"{target}_{k}": v for target, q in quality.items() for k, v in q.items()}
    return {"state": state.fitted(versions, point), "training": training, "main": fitted["accuracy"],
            "aux": fitted.get(aux_metric or ""), "metrics": {**metrics, "training_size": float(len(training))},
            "versions": versions}


def _pretrained(context: SearchContext, space: Any) -> dict[str, Any]:
    """The cost-pretrained predictor weights, kept in the store so every fit step computes them once."""
    import io

    import torch

    from prednas.search.acquisition import PRETRAIN_EPOCHS, pretrained_state

    spec = context.spec
    key = f"artifacts/pretrained/{spec.space}/{spec.pretrain}-{PRETRAIN_EPOCHS}-torch{torch.__version__}.pt"
    store = context.run.store()
    if store.exists(key):
        return torch.load(io.BytesIO(store.get_bytes(key)), weights_only=True)
    weights = pretrained_state(space, spec.pretrain, PRETRAIN_EPOCHS)
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    store.put_bytes(key, buffer.getvalue())
    return weights


def progress_point(context: SearchContext, known: list[Triplet], rounds_done: int) -> dict[str, float]:
    """The best-so-far of this search after ``rounds_done`` rounds: what select would answer now."""
    from prednas.pipeline.report import best_of

    ours = {t.arch_id + t.stage for t in known if t.run_id == context.parent_run_id}
    best = best_of(context.spec, known)
    point = {"round": float(rounds_done), "queries": float(len(ours))}
    if best is not None:
        point["best_accuracy"] = best.accuracy
        if "test_accuracy" in best.report:
            point["best_test_accuracy"] = best.report["test_accuracy"]
    return point


def round_sizes(k: int, rounds: int) -> list[int]:
    """K split into ``rounds`` shares, the larger ones first (every share at least one)."""
    if not isinstance(rounds, int) or not 1 <= rounds <= k:
        raise PredNASError(f"rounds must be an integer in [1, {k}] (at most k, so no round is empty), got {rounds!r}")
    return [k // rounds + (1 if i < k % rounds else 0) for i in range(rounds)]


def search(context: SearchContext, main: bytes, aux: bytes | None, state: SearchState,
           rounds: int = 1) -> tuple[SearchState, list[str]]:
    """Propose this round's share of K: every class scored, or Algorithm 1; returns the state and shards."""
    from prednas.pipeline.fitting import one_thread
    from prednas.predictors.fit import Predictor

    spec = context.spec
    st = stage(spec, "sample")
    round_ = state.round
    if not 1 <= round_ <= rounds:
        raise PredNASError(f"round {round_} of rounds={rounds}: the fit of this round has not run")
    size = round_sizes(spec.k, rounds)[round_ - 1]
    main_p = Predictor.from_bytes(st.space, main)
    aux_p = Predictor.from_bytes(st.space, aux) if aux else None
    if spec.needs_aux and aux_p is None:
        raise PredNASError("the search needs the auxiliary predictor but the fit step produced none")
    rng = exchange.rng_for(spec.seed, "search", round_)
    with one_thread():
        pool, stats = _pool(spec, st.space, main_p, aux_p, rng)
    known = _keys(st.space, [t.arch for t in state.known])
    local = _unseen(st.space, known, _near_best(spec, st.space, state.known, pool))[:spec.refine] \
        if round_ == rounds and spec.refine else []
    picks = _unseen(st.space, known, [*local, *pool])[:size]
    topped = _top_up(spec, st.space, known | {st.space.equivalence_key(a) for a in picks}, round_, size - len(picks))
    chosen = [*picks, *topped]
    predicted = main_p.predict_archs(chosen) if chosen else np.zeros(0)
    stats = {**stats, "from_pool": float(len(picks)), "topped_up": float(len(topped)),
             "refined": float(min(len(local), size))}
    archs = [st.space.to_dict(a) for a in chosen]
    new_state = state.proposed(archs, [float(p) for p in predicted], stats)
    return new_state, exchange.make_shards("top-k", archs, spec.shards, round_=round_)


def _pool(spec: SearchSpec, space: Any, main: Any, aux: Any, rng: np.random.Generator) -> tuple[list[Any], dict]:
    """Candidates best first: every class when enumerable within the limit, else Algorithm 1's pool."""
    from prednas.search.acquisition import can_enumerate, classes_in_window, enumerate_classes
    from prednas.search.constrained import ANALYTIC, SIZE_GRADIENT, ConstrainedConfig, constrained_search
    from prednas.search.gradient import CostWindow, GradientConfig, alpha_grid_search

    window = CostWindow(spec.cost.metric, spec.cost.target, spec.cost.window) if spec.cost else None
    analytic = window is None or window.metric in ANALYTIC
    if can_enumerate(space, spec.exhaustive_limit) and not any(spec.alphas) and analytic:
        archs = enumerate_classes(space) if window is None else classes_in_window(space, window)
        scores = main.predict_archs(archs) if archs else np.zeros(0)
        order = np.argsort(-scores, kind="stable")
        return [archs[i] for i in order], {"pool_size": float(len(archs)), "exhaustive": 1.0}
    options = dict(spec.gradient)
    penalty = options.pop("penalty", "window")
    base = SIZE_GRADIENT if getattr(space, "kind", None) == "size" else GradientConfig()
    config = replace(base, **options)
    if window is None:
        pool = alpha_grid_search(space, main, aux, list(spec.alphas), rng=rng, config=config)
    else:  # a latency window is judged by the auxiliary predictor, an analytic one by the cost model
        pool = constrained_search(space, main, aux, window, rng=rng, aux_metric=spec.aux_target,
                                  config=ConstrainedConfig(gradient=config, alphas=spec.alphas, penalty=penalty))
    return list(pool.archs), {k: float(v) for k, v in pool.stats.items()}


def _near_best(spec: SearchSpec, space: Any, known: list[Triplet], pool: list[Any]) -> list[Any]:
    """The architectures of ``pool`` at most one position (a row of the space's parameter: a layer,
    an edge) away from the best one ``select`` would choose among ``known``, order kept."""
    from prednas.pipeline.report import best_of

    best = best_of(spec, known)
    if best is None:
        return []
    centre = _positions(space, space.from_dict(best.arch))
    return [a for a in pool if np.count_nonzero(np.any(_positions(space, a) != centre, axis=1)) <= 1]


def _positions(space: Any, arch: Any) -> np.ndarray:
    """An architecture's parameter as one row per position (a size space's numbers are rows of one)."""
    return np.asarray(space.param(arch)).reshape(space.param_shape[0], -1)


def _top_up(spec: SearchSpec, space: Any, known: set[str], round_: int, missing: int) -> list[Any]:
    """Up to ``missing`` random unseen architectures for a short pool, inside the samples' cost window."""
    if missing <= 0:
        return []
    draw = _window_draw(spec, space, missing, strict=False)
    archs = _draw_unseen(space, known, exchange.rng_for(spec.seed, "top-up", round_), missing, draw)
    if draw is not None and len(archs) < missing:
        log.warning("round %d: the cost window holds %d unseen architectures beyond the pool, not %d; the round "
                    "proposes fewer", round_, len(archs), missing)
    return archs


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
