"""Size-space benchmarks: preset tables, cost throughput, gradient search vs random shooting.

- ``regnetx_table``: each torchvision ``regnet_x_*`` model against our build of its preset:
  parameters (ours, torchvision's own module), analytic MACs, MACs counted by
  ``torch.utils.flop_counter`` on our network, torchvision's published GFLOPS.
- ``yolox_table``: each YOLOX-space preset: analytic and counted cost against the
  published parameters and GFLOPs (YOLOX README; paper Table VI for PredNAS-S).
- ``cost_throughput``: architectures per second for the analytic cost against building
  the network and counting it (on the meta device, and on the CPU), in one run.
- ``gradient_vs_random``: paper Fig. 4 on AnyNet with a synthetic accuracy
  (``synthetic_accuracy``) in place of ImageNet proxy training: the main and auxiliary
  MLPs are fitted on 30 random architectures, then Algorithm 1 over an alpha grid and
  random shooting with as many predictor evaluations each return their in-window pool;
  the figure is the mean true score of each pool's top 15.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from prednas.search.gradient import CostWindow


def regnetx_table() -> list[dict[str, Any]]:
    """One row per torchvision RegNetX model (224 px, 1000 classes)."""
    import torchvision

    from prednas.models.counting import count_params
    from prednas.spaces import anynet

    rows = []
    for name in [n for n in anynet.PRESETS if n.startswith("regnet_x_")]:
        arch = anynet.preset(name)
        reference = torchvision.models.get_model(name, weights=None)
        published = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta["_ops"]
        analytic, counted = anynet.anynet_cost(arch), anynet.counted_cost(arch)
        rows.append({"model": name, "params": analytic["params"], "counted_params": counted["params"],
                     "torchvision_params": count_params(reference), "macs": analytic["macs"],
                     "counted_macs": counted["macs"], "published_gmacs": published,
                     "deviation": analytic["macs"] / (published * 1e9) - 1})
    return rows


def yolox_table() -> list[dict[str, Any]]:
    """One row per YOLOX-space preset at its input size (80 classes)."""
    from prednas.spaces import yolox

    rows = []
    for name, p in yolox.PRESETS.items():
        arch = yolox.preset(name)
        analytic, counted = yolox.yolox_cost(arch, p["input_size"]), yolox.counted_cost(arch, p["input_size"])
        rows.append({"model": name, "input_size": p["input_size"], "params": analytic["params"],
                     "counted_params": counted["params"], "published_mparams": p["mparams"],
                     "flops": analytic["flops"], "counted_flops": counted["flops"], "published_gflops": p["gflops"],
                     "params_deviation": analytic["params"] / (p["mparams"] * 1e6) - 1,
                     "flops_deviation": analytic["flops"] / (p["gflops"] * 1e9) - 1, "source": p["source"]})
    return rows


def cost_throughput(space_name: str, *, archs: int, counted: int, cpu: int, seed: int) -> dict[str, Any]:
    """Architectures per second: analytic cost of ``archs`` random architectures vs build + count of a subset."""
    import torch

    from prednas.models.counting import count_cost
    from prednas.spaces import get_space

    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    sample = [space.sample(rng) for _ in range(archs)]
    start = time.perf_counter()
    analytic = [space.cost(a) for a in sample]
    t_analytic = time.perf_counter() - start
    start = time.perf_counter()
    for arch, cost in zip(sample[:counted], analytic, strict=False):
        assert space.counted_cost(arch) == cost, "analytic and counted cost disagree"
    t_meta = time.perf_counter() - start
    start = time.perf_counter()
    for arch, cost in zip(sample[:cpu], analytic, strict=False):
        with torch.device("cpu"):
            model = space.build(arch)
        assert count_cost(model, space.input_size, forward=getattr(model, "raw", None)) == cost, "cost disagrees"
    t_cpu = time.perf_counter() - start
    return {"space": space_name, "input_size": space.input_size, "seed": seed,
            "analytic": {"archs": archs, "seconds": t_analytic, "per_second": archs / t_analytic},
            "meta": {"archs": counted, "seconds": t_meta, "per_second": counted / t_meta if counted else 0.0},
            "cpu": {"archs": cpu, "seconds": t_cpu, "per_second": cpu / t_cpu if cpu else 0.0}}


def _softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def synthetic_accuracy(arch: Any) -> float:
    """A fixed, smooth stand-in for the proxy accuracy of an AnyNet architecture (percent-like).

    Compute helps with diminishing returns (``tanh`` of log MACs); within a compute budget
    the score prefers the designs RegNet found good: widths that do not shrink from stage
    to stage, group widths near 16, depth in stage 3 rather than stage 1, bottleneck ratio 1
    (more so in later stages). Every term is smooth in the log of the sizes, and they
    interact through MACs and the group width ``W x R / G``.
    """
    from prednas.spaces.anynet import anynet_cost

    macs = anynet_cost(arch)["macs"]
    logw = [math.log2(w) for w in arch.widths]
    score = 50.0 + 10.0 * math.tanh(math.log(macs / 1e8) / 3.0)
    score -= 0.5 * sum(_softplus(2.0 * (logw[i] - logw[i + 1])) for i in range(3))
    score -= 0.125 * sum((math.log2(gw) - 4.0) ** 2 for gw in arch.group_widths)
    score += 2.0 * math.tanh((arch.depths[2] - arch.depths[0]) / 4.0)
    score -= 0.15 * sum((i + 1) * math.log2(r) ** 2 for i, r in enumerate(arch.ratios))
    return score


def gradient_vs_random(targets: list[float], *, seed: int, n: int = 30, top: int = 15, delta: float = 0.05,
                       config: Any = None, fit: Any = None, aux_samples: int = 1000,
                       members: int | None = None) -> dict[str, Any]:
    """Fig. 4 on AnyNet with ``synthetic_accuracy``: top-``top`` mean true score per MACs target.

    Two random-shooting budgets: ``random`` draws as many architectures as gradient search
    scored relaxed points (``alphas x starts x steps``), ``random_explored`` as many as it
    visited distinct architectures, the paper's count ("we randomly sample 100000 models
    following the number of models explored in gradient search"). Both methods score with the
    same main predictor, an ensemble of ``members`` MLPs (default ``SIZE_MEMBERS``).
    """
    from prednas.search.constrained import (
        SIZE_MEMBERS,
        ConstrainedConfig,
        Measured,
        constrained_search,
        fit_predictors,
        random_shooting,
    )
    from prednas.spaces import get_space

    space = get_space("anynet")
    config = config or ConstrainedConfig()
    members = members or SIZE_MEMBERS
    rng = np.random.default_rng(seed)
    records = [Measured(a, synthetic_accuracy(a)) for a in (space.sample(rng) for _ in range(n))]
    main, aux = fit_predictors(space, records, aux_metric="macs", seed=seed, config=fit, aux_samples=aux_samples,
                               members=members)
    rows = []
    for i, target in enumerate(targets):
        window = CostWindow("macs", target, delta * target)
        runs = {}
        for method in ("gradient", "random", "random_explored"):
            run_rng = np.random.default_rng([seed, i])
            start = time.perf_counter()
            if method == "gradient":
                pool = constrained_search(space, main, aux, window, rng=run_rng, config=config, aux_metric="macs")
                visited = max(1, int(pool.stats["visited"]))
            else:
                draws = config.evaluations if method == "random" else visited
                pool = random_shooting(space, main, window, rng=run_rng, draws=draws)
            true = [synthetic_accuracy(a) for a in pool.archs[:top]]
            runs[method] = {"pool": len(pool), "evaluations": int(pool.stats["evaluations"]),
                            "top_mean": float(np.mean(true)) if true else float("nan"),
                            "top_best": max(true) if true else float("nan"), "top_count": len(true),
                            "seconds": time.perf_counter() - start}
        rows.append({"target_macs": target, "delta": delta, **runs})
    return {"seed": seed, "n": n, "top": top, "aux_samples": aux_samples, "members": members,
            "alphas": list(config.alphas),
            "penalty": config.penalty,
            "starts": config.gradient.starts, "steps": config.gradient.steps, "radius": config.gradient.radius,
            "rows": rows}
