"""Cost-constrained search in size spaces (paper Sec. III-C, IV-B, IV-C and Fig. 4).

From measured triplets, fit the main predictor (accuracy) and an auxiliary one (the log of
MACs, FLOPs, params or a measured latency), then run Algorithm 1
(``prednas.search.gradient``) at every alpha of a grid, keeping each projected point whose
cost lies in ``[target - delta, target + delta]``; the merged pool is ranked by the main
predictor ("we adopt a grid search strategy to tune the value of alpha and all the models
under the target constraints during update will be added into the model pool").

Two cost terms (``ConstrainedConfig.penalty``):

- ``"window"`` (default): ``alpha x`` how far the cost lies outside the inner half of the
  window, squared, in log units (``WindowPenalty``). Zero inside, so it leaves an iterate in
  the window to the main predictor and pulls back one that strays. For an analytic metric the
  term is anchored: each row's predicted cost is corrected to the analytic cost of its current
  projection, so the auxiliary predictor only gives the slope. One alpha suffices
  (``WINDOW_ALPHAS``).
- ``"linear"``: the paper's ``alpha x P_aux`` (Eq. 3) over the paper's alpha grid
  (``PAPER_ALPHAS``). It only ever pushes the cost down, so each alpha has its own equilibrium
  cost; an iterate crosses the window on its way there and the pool holds only what it met in
  passing.

Default shape for size spaces (``SIZE_GRADIENT``): 7000 starts, each a random architecture
whose widths are scaled by one factor into the window (``window_starts``; a projection onto the
constraint, with the analytic cost), 20 Adam steps each, every iterate kept within 0.1 (a tenth
of each range) of its start, and the starts themselves offered to the pool. A fitted MLP is
close to linear away from its 30 samples, so a long unbounded ascent ends in a corner of the box
where it extrapolates most; short local ascents from many in-window starts improve the
predicted score where the predictor has seen architectures like them. README, Results, Size
spaces, has the measurements against random shooting.

The main predictor of a size space is an ensemble of ``SIZE_MEMBERS`` (3) of the paper's MLPs,
fitted from different seeds (``prednas.predictors.fit.fit_ensemble``); its mean is the score
that both the ascent and the ranking use. Fitted on 30 architectures, one MLP's gradient is in
part an accident of its initialisation, and a local ascent follows it: on some seeds straight
into architectures that this one network alone overrates. Averaging seeds keeps the directions
they agree on.

The baseline is random shooting with the same predictor and the same number of predictor
evaluations: as many random architectures as Algorithm 1 scored relaxed points
(``alphas x starts x steps``), those in the window ranked by the main predictor.

Triplets file: JSON lines, one measured architecture per line::

    {"arch": {...}, "accuracy": 71.3, "cost": {"latency_ms": 4.1}}

``arch`` is the space's JSON form (``prednas cost --json`` and the presets use the same);
``accuracy`` is the search signal (higher is better); ``cost`` is optional and only read
for ``latency_ms`` (also accepted at the top level); a ``space`` field, when present, must
name the space; other fields (a stored ``Triplet``'s ids, report, stage) are ignored.
Blank lines and lines starting with ``#`` are skipped.

Deviations: the auxiliary predictor is fitted on the log of its metric (costs span orders
of magnitude). MACs, FLOPs and params come from the analytic cost model rather than the
file, and cost nothing to obtain, so their auxiliary predictor is fitted on the triplets
plus ``aux_samples`` random architectures (default 1000; batch 64 and a tenth of the
epochs, which bounds the fitting time): on 1000 held-out AnyNet architectures it ranks
log-MACs at a Kendall tau of 0.84, against 0.55 when fitted on 30 triplets alone, whose
trajectories then miss the low-cost windows. A measured latency has only the triplets.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prednas.errors import PredNASError
from prednas.predictors.fit import Ensemble, FitConfig, Predictor, fit_ensemble, fit_predictor
from prednas.search.gradient import CostWindow, GradientConfig, Pool, alpha_grid_search

ANALYTIC = ("macs", "flops", "params")
METRICS = (*ANALYTIC, "latency_ms")
PAPER_ALPHAS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
WINDOW_ALPHAS: tuple[float, ...] = (1.0,)
SIZE_GRADIENT = GradientConfig(starts=7000, steps=20, radius=0.1, keep_starts=True)
SIZE_MEMBERS = 3  # main-predictor ensemble of a size space
PENALTIES = ("window", "linear")
_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


@dataclass(frozen=True)
class Measured:
    """One line of a triplets file: an architecture, its accuracy and any measured costs."""

    arch: Any
    accuracy: float
    cost: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConstrainedConfig:
    """Algorithm 1's knobs plus the alpha grid."""

    gradient: GradientConfig = SIZE_GRADIENT
    alphas: tuple[float, ...] = WINDOW_ALPHAS
    penalty: str = "window"

    @property
    def evaluations(self) -> int:
        """Relaxed points the main predictor scores (the budget random shooting gets)."""
        return len(self.alphas) * self.gradient.starts * self.gradient.steps


def load_triplets(path: str | Path, space: Any) -> list[Measured]:
    """Read and check a triplets file (format in the module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PredNASError(f"cannot read triplets file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PredNASError(f"triplets file {path} is not UTF-8 text; expected JSON lines") from None
    out = [_parse_line(text, space, f"{path}:{n}") for n, text in enumerate(lines, 1)
           if text.strip() and not text.lstrip().startswith("#")]
    if len(out) < 2:
        raise PredNASError(f"triplets file {path} has {len(out)} triplets; a predictor needs at least 2")
    return out


def _parse_line(text: str, space: Any, where: str) -> Measured:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PredNASError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "arch" not in data or "accuracy" not in data:
        raise PredNASError(f"{where}: expected an object with 'arch' and 'accuracy'")
    if data.get("space", space.name) != space.name:
        raise PredNASError(f"{where}: triplet of space {data['space']!r}, expected {space.name!r}")
    accuracy = data["accuracy"]
    # abs(x) <= max is False for NaN and inf and compares an int too large for a float exactly
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not abs(accuracy) <= sys.float_info.max:
        raise PredNASError(f"{where}: accuracy = {accuracy!r}: expected a finite number")
    try:
        arch = space.from_dict(data["arch"])
    except PredNASError as exc:
        raise PredNASError(f"{where}: {exc}") from None
    cost = data.get("cost") or {}
    if not isinstance(cost, dict):
        raise PredNASError(f"{where}: cost = {cost!r}: expected an object of named numbers")
    cost = dict(cost)
    if "latency_ms" in data:
        cost["latency_ms"] = data["latency_ms"]
    return Measured(arch, float(accuracy), cost)


def metric_values(space: Any, records: list[Measured], metric: str) -> np.ndarray:
    """``metric`` of every record: analytic for MACs/FLOPs/params, from the file for latency."""
    if metric not in METRICS:
        raise PredNASError(f"unknown cost metric {metric!r}; expected one of: {', '.join(METRICS)}")
    if metric in ANALYTIC:
        return np.array([space.cost(r.arch)[metric] for r in records], dtype=np.float64)
    values = []
    for i, r in enumerate(records):
        v = r.cost.get(metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= sys.float_info.max:
            raise PredNASError(f"triplet {i + 1} has {metric} = {v!r}: a latency predictor needs a positive "
                               f"'{metric}' on every line")
        values.append(float(v))
    return np.array(values)


def fit_predictors(space: Any, records: list[Measured], *, aux_metric: str, seed: int,
                   config: FitConfig | None = None, aux_samples: int = 1000, members: int = 1,
                   init: dict[str, Any] | None = None) -> tuple[Predictor | Ensemble, Predictor]:
    """Main predictor on accuracy (``members`` MLPs, an ``Ensemble`` when more than one) and
    auxiliary predictor on ``log(aux_metric)`` (MLPs for a size space).

    An analytic ``aux_metric`` also learns from ``aux_samples`` random architectures drawn
    with ``seed`` (their cost is computed, not measured).
    """
    config = config or FitConfig()
    x = np.stack([space.encode(r.arch) for r in records])
    main = fit_ensemble(space, x, np.array([r.accuracy for r in records]), seed=seed, members=members, config=config,
                        init=init)
    y = np.log(metric_values(space, records, aux_metric))
    aux_config = config
    if aux_metric in ANALYTIC and aux_samples > 0:
        rng = np.random.default_rng([seed, 1])
        extra = [space.sample(rng) for _ in range(aux_samples)]
        x = np.concatenate([x, np.stack([space.encode(a) for a in extra])])
        y = np.concatenate([y, np.log([space.cost(a)[aux_metric] for a in extra])])
        aux_config = replace(config, batch_size=max(config.batch_size, 64), epochs=max(1, config.epochs // 10))
    return main, fit_predictor(space, x, y, seed=seed + 1, config=aux_config)


class _PredictedMetric:
    """A space whose ``cost`` also reports a metric predicted by a log-scale predictor (latency windows)."""

    def __init__(self, space: Any, metric: str, predictor: Predictor) -> None:
        self._space, self._metric, self._predictor = space, metric, predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._space, name)

    def cost(self, arch: Any) -> dict[str, float]:
        value = float(np.exp(self._predictor.predict_archs([arch])[0]))
        return {**self._space.cost(arch), self._metric: value}


class WindowPenalty:
    """How far the cost of each relaxed point lies outside the inner half of a cost window.

    ``10 x relu(|log c - log target| - h / 2) ** 2`` with ``h = log(1 + delta / target)``, where
    ``log c`` is the auxiliary predictor's output (it is fitted on log cost). Zero inside the
    inner half of the window, so alpha only sets how hard a straying iterate is pulled back.

    With an analytic ``cost`` the term is anchored: the search calls ``anchor(archs)`` with the
    projection of every row, and each row's predicted log cost is shifted by the predictor's
    error there. The predictor then supplies only the local slope; the value is exact at the
    projection, which keeps low-cost windows (where a predictor fitted on random architectures
    errs most) reachable.
    """

    PULL = 10.0

    def __init__(self, aux: Predictor, target: float, delta: float, *, scale: float = 1.0,
                 cost: Any = None) -> None:
        self.aux = aux
        self.center = math.log(target * scale)
        self.tolerance = 0.5 * math.log1p(delta / target)
        self.cost = cost
        self.offset: torch.Tensor | None = None

    def anchor(self, archs: list[Any]) -> None:
        """Correct each row's predicted log cost to the analytic cost of its projection ``archs[i]``."""
        if self.cost is None:
            return
        predicted = self.aux.predict_archs(archs)
        actual = np.log([max(float(self.cost(a)), 1e-30) for a in archs])
        self.offset = torch.as_tensor(actual - predicted, dtype=torch.float32)

    def __call__(self, encodings: torch.Tensor) -> torch.Tensor:
        """The penalty of each row (the term alpha multiplies)."""
        z = self.aux(encodings) * self.aux.std + self.aux.mean
        if self.offset is not None and self.offset.shape == z.shape:
            z = z + self.offset
        return torch.relu((z - self.center).abs() - self.tolerance) ** 2 * self.PULL


def metric_scale(window_metric: str, aux_metric: str) -> float | None:
    """Factor from a window's metric to the auxiliary predictor's (FLOPs = 2 x MACs); None if neither."""
    if window_metric == aux_metric:
        return 1.0
    return {("macs", "flops"): 2.0, ("flops", "macs"): 0.5}.get((window_metric, aux_metric))


def window_penalty(aux: Predictor, window: CostWindow, aux_metric: str, space: Any = None) -> WindowPenalty:
    """The window term for an auxiliary predictor of ``log(aux_metric)``; FLOPs and MACs convert (x2).

    Given the ``space``, an analytic ``aux_metric`` anchors the term to the space's cost model.
    """
    scale = metric_scale(window.metric, aux_metric)
    if scale is None:
        raise PredNASError(f"penalty 'window' on {window.metric} needs the auxiliary predictor on {window.metric} "
                           f"(it learns {aux_metric}); set that aux target or penalty 'linear'")
    cost = None
    if space is not None and aux_metric in ANALYTIC:
        def cost(arch: Any) -> float:
            return space.cost(arch)[aux_metric]
    return WindowPenalty(aux, window.target, window.delta, scale=scale, cost=cost)


def into_window(space: Any, arch: Any, window: CostWindow, *, iters: int = 24) -> Any | None:
    """``arch`` with its widths scaled by one factor so that its cost lies in ``window``; None if no factor does.

    Bisection on the log of the factor (the cost grows with it); needs ``space.scale_widths``.
    """
    def cost(log_factor: float) -> tuple[Any, float]:
        scaled = space.scale_widths(arch, math.exp(log_factor))
        return scaled, space.cost(scaled)[window.metric]

    low, high = -8.0, 8.0  # factors of 1/3000 to 3000 take every width to an end of its range
    if cost(low)[1] > window.target + window.delta or cost(high)[1] < window.target - window.delta:
        return None
    for _ in range(iters):
        mid = 0.5 * (low + high)
        scaled, value = cost(mid)
        if window.contains({window.metric: value}):
            return scaled
        low, high = (mid, high) if value < window.target else (low, mid)
    return None


def window_starts(space: Any, window: CostWindow, rng: np.random.Generator, n: int, *, tries: int = 20) -> list[Any]:
    """``n`` starting architectures: random ones scaled into ``window`` (``into_window``).

    A draw that no width factor brings into the window is replaced, up to ``tries x n`` draws;
    any still missing are plain random architectures.
    """
    out: list[Any] = []
    for _ in range(tries * n):
        if len(out) == n:
            break
        arch = into_window(space, space.sample(rng), window)
        if arch is not None:
            out.append(arch)
    return out + [space.sample(rng) for _ in range(n - len(out))]


class WindowDraw:
    """Random architectures inside an analytic cost window (the pipeline's random draws under a cost target).

    A size space scales each random draw's widths into the window (``into_window``, as
    ``window_starts`` does); any other space keeps the draws that fall inside (rejection).
    After ``max_draws`` raw draws in all, one line says the window is empty or too narrow
    (``strict``; else the draw returns None: it has run out).
    """

    def __init__(self, space: Any, window: CostWindow, max_draws: int, *, strict: bool = True) -> None:
        if window.metric not in ANALYTIC:
            raise PredNASError(f"cost.metric {window.metric!r} is measured, not analytic; a draw cannot be kept "
                               f"inside its window before measuring (expected one of {', '.join(ANALYTIC)})")
        self.space, self.window, self.max_draws, self.strict = space, window, max_draws, strict
        self.scaled = hasattr(space, "scale_widths")
        self.draws = self.inside = 0

    def __call__(self, rng: np.random.Generator) -> Any | None:
        """The next random architecture inside the window (None once spent, unless ``strict``)."""
        while self.draws < self.max_draws:
            self.draws += 1
            arch = self.space.sample(rng)
            if self.scaled:
                arch = into_window(self.space, arch, self.window)
            elif not self.window.contains(self.space.cost(arch)):
                arch = None
            if arch is not None:
                self.inside += 1
                return arch
        if not self.strict:
            return None
        w = self.window
        raise PredNASError(f"cost window {w.metric} {w.target:.4g} +- {w.delta:.4g} (cost.target, cost.window) is "
                           f"empty or too narrow for space {self.space.name!r}: {self.inside} of {self.draws} random "
                           "draws landed in it; expected a wider cost.window, or cost.sample_in_window: false")


def window_draw(space: Any, window: CostWindow, count: int, *, strict: bool = True) -> WindowDraw:
    """A ``WindowDraw`` with a budget for ``count`` architectures: 50 scaled or 5,000 rejected draws each."""
    per_arch = 50 if hasattr(space, "scale_widths") else 5_000
    return WindowDraw(space, window, per_arch * max(1, count), strict=strict)


def _window_space(space: Any, window: CostWindow, aux: Predictor, aux_metric: str) -> Any:
    if window.metric in ANALYTIC:
        return space
    if window.metric != aux_metric:
        raise PredNASError(f"a {window.metric} target needs the auxiliary predictor on {window.metric}, "
                           f"not {aux_metric}")
    return _PredictedMetric(space, window.metric, aux)


def constrained_search(space: Any, main: Predictor | Ensemble, aux: Predictor, window: CostWindow, *,
                       rng: np.random.Generator, config: ConstrainedConfig | None = None,
                       aux_metric: str = "flops") -> Pool:
    """Algorithm 1 at every alpha of ``config.alphas``; the merged in-window pool, best predicted first."""
    config = config or ConstrainedConfig()
    if window.metric not in METRICS:
        raise PredNASError(f"unknown cost metric {window.metric!r}; expected one of: {', '.join(METRICS)}")
    if not config.alphas or any(a < 0 or not math.isfinite(a) for a in config.alphas):
        raise PredNASError(f"alphas must be non-negative numbers, got {list(config.alphas)}")
    if config.penalty not in PENALTIES:
        raise PredNASError(f"unknown penalty {config.penalty!r}; expected one of: {', '.join(PENALTIES)}")
    searched = _window_space(space, window, aux, aux_metric)
    term = aux
    if config.penalty == "window" and aux is not None and any(config.alphas):
        term = window_penalty(aux, window, aux_metric, space)
    draw = None
    if window.metric in ANALYTIC and hasattr(space, "scale_widths"):
        def draw(r: np.random.Generator, n: int) -> list[Any]:
            return window_starts(space, window, r, n)
    pool = alpha_grid_search(searched, main, term, list(config.alphas), rng=rng, config=config.gradient,
                             window=window, draw=draw)
    pool.stats["evaluations"] = float(config.evaluations)
    return pool


def random_shooting(space: Any, main: Predictor | Ensemble, window: CostWindow, *, rng: np.random.Generator, draws: int,
                    aux: Predictor | None = None, aux_metric: str = "flops") -> Pool:
    """``draws`` random architectures; the distinct ones in the window ranked by the main predictor."""
    if draws < 1:
        raise PredNASError(f"draws must be a positive integer, got {draws}")
    searched = _window_space(space, window, aux, aux_metric) if window.metric not in ANALYTIC else space
    seen: dict[Any, dict[str, float] | None] = {}
    for _ in range(draws):
        arch = space.sample(rng)
        if arch not in seen:
            cost = searched.cost(arch)
            seen[arch] = cost if window.contains(cost) else None
    archs = [a for a, c in seen.items() if c is not None]
    scores = main.predict_archs(archs)
    order = np.argsort(-scores, kind="stable")
    stats = {"pool_size": float(len(archs)), "visited": float(len(seen)), "evaluations": float(draws)}
    return Pool([archs[i] for i in order], scores[order], [seen[archs[i]] for i in order], stats)


def parse_quantity(text: str, name: str) -> float:
    """``600M``, ``1.6G``, ``3e9``, ``12.5`` -> a positive number (K, M, G, T are powers of 1000)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise PredNASError(f"{name} = {text!r}: expected a positive number with an optional K, M, G or T suffix")
    return float(match.group(1)) * _SUFFIX[match.group(2).upper()]


def parse_delta(text: str, target: float) -> float:
    """``5%`` of ``target``, or an absolute quantity like ``30M``."""
    text = str(text).strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            percent = -1.0
        if not 0 < percent < 100:
            raise PredNASError(f"delta = {text!r}: expected a percentage between 0 and 100, or a quantity like 30M")
        return target * percent / 100
    return parse_quantity(text, "delta")
