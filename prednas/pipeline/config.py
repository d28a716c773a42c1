"""Search configs: YAML files validated on load into one frozen ``SearchSpec``.

A config names the space, the evaluator (optionally a longer top-K recipe, and an
optional final stage that retrains the best ``final_m`` with its own recipe), the
paper's budget N and K (Sec. III-D), the predictor recipe, Algorithm 1's knobs, the alpha
grid and cost window of Eq. 2, how the work fans out, and where results go. Every bad
value raises ``PredNASError`` with one line naming the key, the value and what was
expected. The same checks run when a pipeline step receives its parameters, so a value
set on ``prednas submit`` is caught as early as one in a file.

``to_arguments()`` flattens a spec into the pipeline's parameters; ``from_arguments()``
is its inverse (KFP passes numbers inside dicts as floats, which it undoes).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from prednas.errors import PredNASError, SettingError

INT_LIMIT = 100_000
FIT_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "huber_delta")
GRADIENT_KEYS = ("starts", "steps", "lr", "lr_decay", "optimizer", "penalty", "radius")
PREDICTOR_KEYS = (*FIT_KEYS, "cv_folds", "aux_target", "members")
MAX_MEMBERS = 32  # main-predictor ensemble
DEFAULT_ROUNDS = 4  # fit -> propose -> evaluate rounds the K queries are spent in (at most K)
DEFAULT_FOLDS = 3  # cross-validation folds of the predictor fit
AUX_TARGETS = ("flops", "macs", "params", "latency_ms")  # as prednas.search.constrained.METRICS


def _int(key: str, value: Any, low: int, high: int = INT_LIMIT) -> int:
    """An integer in [low, high]; integral floats (as KFP passes them) are accepted."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PredNASError(f"{key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _float(key: str, value: Any, low: float = -math.inf) -> float:
    """A finite number no smaller than ``low`` (YAML 1.1 reads ``2.0e8`` as text, so numeric text counts)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    # abs(value) <= max is False for NaN and inf, and compares an int too large for a float exactly
    if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) <= sys.float_info.max \
            or value < low:
        bound = f" >= {low:g}" if low > -math.inf else ""
        raise PredNASError(f"{key} must be a finite number{bound}, got {value!r}")
    return float(value)


def _text(key: str, value: Any, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise PredNASError(f"{key} must be a {'' if empty else 'non-empty '}string, got {value!r}")
    return value.strip()


def _mapping(key: str, value: Any, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PredNASError(f"{key} must be a mapping, got {value!r}")
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed), key=str)  # YAML keys need not all be strings
        if unknown:
            raise PredNASError(f"unknown key {key}.{unknown[0]}; expected some of: {', '.join(allowed)}")
    return dict(value)


def _number_like(value: Any) -> Any:
    """Undo KFP's int-to-float conversion inside structs."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _number_like(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_number_like(v) for v in value]
    return value


@dataclass(frozen=True)
class CostTarget:
    """Eq. 2's constraint: keep architectures whose ``metric`` lies in ``target +- window``.

    ``sample_in_window``: the sample stage draws only architectures inside the window (when
    the metric is analytic; a measured latency cannot be known before measuring).
    """

    metric: str
    target: float
    window: float
    sample_in_window: bool = True

    def __post_init__(self) -> None:
        _text("cost.metric", self.metric, empty=False)
        object.__setattr__(self, "target", _float("cost.target", self.target, 0.0))
        object.__setattr__(self, "window", _float("cost.window", self.window, 0.0))
        if not isinstance(self.sample_in_window, bool):
            raise PredNASError(f"cost.sample_in_window must be true or false, got {self.sample_in_window!r}")


@dataclass(frozen=True)
class Resources:
    """What each step asks the cluster for (compile time, except the accelerator)."""

    cpu: str = "1"
    memory: str = "2Gi"
    accelerator: str = ""
    accelerator_count: int = 1

    def __post_init__(self) -> None:
        for key in ("cpu", "memory", "accelerator"):
            _text(f"resources.{key}", getattr(self, key))
        count = _int("resources.accelerator_count", self.accelerator_count, 1, 16)
        object.__setattr__(self, "accelerator_count", count)


@dataclass(frozen=True)
class SearchSpec:
    """One PredNAS search, validated (see ``pipelines/configs/`` for annotated examples)."""

    space: str = "nb201"
    evaluator: dict[str, Any] = field(default_factory=lambda: {"name": "nb201-table", "dataset": "cifar100"})
    topk_evaluator: dict[str, Any] = field(default_factory=dict)
    final_m: int = 0
    final_evaluator: dict[str, Any] = field(default_factory=dict)
    n: int = 30
    k: int = 40
    seed: int = 0
    rounds: int | None = None
    exhaustive_limit: int = 100_000
    pretrain: int = 0
    refine: int = 0
    predictor: dict[str, Any] = field(default_factory=dict)
    gradient: dict[str, Any] = field(default_factory=dict)
    alphas: tuple[float, ...] = (0.0,)
    cost: CostTarget | None = None
    shards: int = 2
    parallelism: int = 2
    retries: int = 2
    resources: Resources = field(default_factory=Resources)
    tracking_uri: str = ""
    experiment: str = "prednas"
    store_uri: str = ""
    run_name: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "space", _text("space", self.space, empty=False))
        set_(self, "n", _int("n", self.n, 2))
        set_(self, "k", _int("k", self.k, 1))
        set_(self, "seed", _int("seed", self.seed, 0, 2**31 - 1))
        set_(self, "rounds", min(DEFAULT_ROUNDS, self.k) if self.rounds is None else
             _int("rounds", self.rounds, 1, self.k))
        set_(self, "exhaustive_limit", _int("exhaustive_limit", self.exhaustive_limit, 0, 10**9))
        set_(self, "pretrain", _int("pretrain", self.pretrain, 0, 10**6))
        set_(self, "refine", _int("refine", self.refine, 0, 10**6))
        set_(self, "shards", _int("shards", self.shards, 1, 1000))
        set_(self, "parallelism", _int("parallelism", self.parallelism, 1, 1000))
        set_(self, "retries", _int("retries", self.retries, 0, 10))
        set_(self, "evaluator", _number_like(_mapping("evaluator", self.evaluator)))
        set_(self, "topk_evaluator", _number_like(_mapping("topk_evaluator", self.topk_evaluator)))
        set_(self, "final_evaluator", _number_like(_mapping("final_evaluator", self.final_evaluator)))
        set_(self, "final_m", _int("final_m", self.final_m, 0, 1000))
        if self.final_m > self.n + self.k:
            raise PredNASError(f"final_m must be an integer in [0, {self.n + self.k}] (at most n + k), "
                               f"got {self.final_m!r}")
        set_(self, "predictor", _number_like(_mapping("predictor", self.predictor, PREDICTOR_KEYS)))
        set_(self, "gradient", _number_like(_mapping("gradient", self.gradient, GRADIENT_KEYS)))
        set_(self, "alphas", _alphas(self.alphas))
        for key in ("tracking_uri", "experiment", "store_uri", "run_name"):
            set_(self, key, _text(key, getattr(self, key)))
        _text("experiment", self.experiment, empty=False)
        self._check_registries()

    def _check_registries(self) -> None:
        from prednas.evaluators.registry import check_space, evaluator_names, evaluator_options
        from prednas.search.methods import check_budget
        from prednas.spaces import get_space

        space = get_space(self.space)
        for key, config in (("evaluator", self.evaluator), ("topk_evaluator", self.topk_evaluator),
                            ("final_evaluator", self.final_evaluator)):
            if not config and key != "evaluator":
                continue
            if isinstance(config, Mapping) and "name" not in config:
                raise PredNASError(f"{key}.name is missing; expected one of: {', '.join(evaluator_names())} "
                                   f"(a stage's own evaluator is a whole evaluator config)")
            try:
                entry, _ = evaluator_options(config)
                check_space(entry, self.space)
            except PredNASError as exc:
                raise PredNASError(f"{key}: {exc}") from None
        check_budget(space, self.n, self.k)
        analytic = list(space.cost(space.sample(_fixed_rng())))
        if self.cost is not None and self.cost.metric not in (*analytic, self.aux_target):
            raise PredNASError(f"cost.metric {self.cost.metric!r} is neither a cost of space {self.space!r} "
                               f"({', '.join(analytic)}) nor the measured predictor.aux_target {self.aux_target!r}")
        self._check_recipes()

    def _check_recipes(self) -> None:
        for key in ("epochs", "batch_size"):
            if key in self.predictor:
                _int(f"predictor.{key}", self.predictor[key], 1)
        for key in ("lr", "momentum", "weight_decay", "huber_delta"):
            if key in self.predictor:
                _float(f"predictor.{key}", self.predictor[key], 0.0)
        if "members" in self.predictor:
            _int("predictor.members", self.predictor["members"], 1, MAX_MEMBERS)
        folds = self.predictor.get("cv_folds", DEFAULT_FOLDS)
        if folds != 0:
            _int("predictor.cv_folds", folds, 2, self.n)
        if self.aux_target not in AUX_TARGETS:
            raise PredNASError(f"predictor.aux_target must be one of {', '.join(AUX_TARGETS)}, got {self.aux_target!r}")
        for key in ("starts", "steps"):
            if key in self.gradient:
                _int(f"gradient.{key}", self.gradient[key], 1)
        for key in ("lr", "lr_decay"):
            if key in self.gradient:
                _float(f"gradient.{key}", self.gradient[key], 0.0)
        if self.gradient.get("radius") is not None:
            _float("gradient.radius", self.gradient["radius"], 0.0)
        if self.gradient.get("optimizer", "adam") not in ("adam", "sgd"):
            raise PredNASError(f"gradient.optimizer must be adam or sgd, got {self.gradient['optimizer']!r}")
        self._check_penalty()

    def _check_penalty(self) -> None:
        from prednas.search.constrained import PENALTIES, metric_scale

        penalty = self.gradient.get("penalty", "window")
        if penalty not in PENALTIES:
            raise PredNASError(f"gradient.penalty must be one of {', '.join(PENALTIES)}, got {penalty!r}")
        metric, aux = (self.cost.metric if self.cost else ""), self.aux_target
        if penalty == "window" and self.cost is not None and any(self.alphas) and metric_scale(metric, aux) is None:
            raise PredNASError(f"gradient.penalty 'window' on cost.metric {metric!r} needs predictor.aux_target "
                               f"{metric!r} (got {aux!r}), or gradient.penalty 'linear' (the paper's term)")

    def check_evaluators(self, *, data: bool = True) -> None:
        """Build each stage's evaluator and check its data without training, so a bad option or data path
        fails before any step runs, in one line naming the config key and the stages that use it.

        ``data=False`` checks the options only: a search sent to a cluster reads its data from the
        cluster's volume, not from this machine.
        """
        from prednas.pipeline.context import build_evaluator

        for key, stages in self.evaluator_keys().items():
            where = (f"the {stages[0]} stage's evaluator" if len(stages) == 1 else
                     f"the {' and '.join(stages)} stages' evaluator")
            try:
                evaluator = build_evaluator(getattr(self, key))
                check = getattr(evaluator, "check", None)
                if data and check is not None:
                    check()
            except SettingError as exc:
                raise PredNASError(f"{key}.{exc.key}: {exc.detail} ({where})") from None
            except PredNASError as exc:
                raise PredNASError(f"{key}: {exc} ({where})") from None

    def evaluator_keys(self) -> dict[str, list[str]]:
        """The config key of each stage's evaluator (``evaluator``, ``topk_evaluator``, ``final_evaluator``)
        mapped to the stages that use it, in stage order."""
        keys = {"sample": "evaluator", "top-k": "topk_evaluator" if self.topk_evaluator else "evaluator"}
        if self.final_m > 0:
            keys["final"] = "final_evaluator" if self.final_evaluator else keys["top-k"]
        out: dict[str, list[str]] = {}
        for stage_name, key in keys.items():
            out.setdefault(key, []).append(stage_name)
        return out

    @property
    def aux_target(self) -> str:
        """The cost the auxiliary predictor learns."""
        return self.predictor.get("aux_target", "flops")

    @property
    def needs_aux(self) -> bool:
        """Whether the auxiliary predictor is used: an alpha above 0, or a window on a measured cost."""
        return any(self.alphas) or (self.cost is not None and self.cost.metric == self.aux_target
                                    and self.aux_target == "latency_ms")

    @property
    def stage_evaluators(self) -> dict[str, dict[str, Any]]:
        """The evaluator config of each stage: the top-K stage may use a longer recipe, the final stage another."""
        stages = {"sample": self.evaluator, "top-k": self.topk_evaluator or self.evaluator}
        if self.final_m > 0:
            stages["final"] = self.final_evaluator or stages["top-k"]
        return stages

    @property
    def trains(self) -> bool:
        """Whether any stage's evaluator trains networks (steps then request an accelerator)."""
        from prednas.evaluators.registry import evaluator_entry

        return any(evaluator_entry(c["name"]).trains for c in self.stage_evaluators.values())

    def accelerator(self) -> str:
        """The accelerator resource the evaluate steps request ('' for none)."""
        if self.resources.accelerator:
            return self.resources.accelerator
        return "nvidia.com/gpu" if self.trains else ""

    def to_arguments(self) -> dict[str, Any]:
        """The pipeline's run-time parameters."""
        cost = self.cost or CostTarget("none", 0.0, 0.0)
        return {
            "space": self.space, "evaluator": self.evaluator, "topk_evaluator": self.topk_evaluator,
            "final_m": self.final_m, "final_evaluator": self.final_evaluator,
            "n": self.n, "k": self.k, "seed": self.seed, "exhaustive_limit": self.exhaustive_limit,
            "pretrain": self.pretrain, "refine": self.refine, "predictor": self.predictor, "gradient": self.gradient,
            "alphas": list(self.alphas), "cost_metric": cost.metric if self.cost else "",
            "cost_target": cost.target, "cost_window": cost.window,
            "cost_sample_in_window": cost.sample_in_window, "shards": self.shards,
            "tracking_uri": self.tracking_uri, "experiment": self.experiment, "store_uri": self.store_uri,
            "run_name": self.run_name, "accelerator": self.accelerator(),
            "accelerator_count": self.resources.accelerator_count,
        }

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> SearchSpec:
        """Inverse of ``to_arguments`` (compile-time fields keep their defaults; ``rounds`` is compiled in)."""
        args = dict(arguments)
        metric = args.pop("cost_metric", "")
        target, window = args.pop("cost_target", 0.0), args.pop("cost_window", 0.0)
        in_window = args.pop("cost_sample_in_window", True)
        accelerator = args.pop("accelerator", "")
        count = args.pop("accelerator_count", 1)
        cost = CostTarget(metric, target, window, in_window) if metric else None
        return cls(**args, cost=cost, resources=Resources(accelerator=accelerator, accelerator_count=count))

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (``load_config`` of it gives this spec back)."""
        data = asdict(self)
        data["alphas"] = list(self.alphas)
        return data


def _alphas(value: Any) -> tuple[float, ...]:
    items = [value] if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(items, list | tuple) or not 1 <= len(items) <= 64:
        raise PredNASError(f"alphas must be a list of 1 to 64 numbers >= 0, got {value!r}")
    return tuple(_float(f"alphas[{i}]", a, 0.0) for i, a in enumerate(items))


def _fixed_rng() -> Any:
    import numpy as np

    return np.random.default_rng(0)


_FIELDS = {f.name for f in fields(SearchSpec)}


def spec_from_dict(data: Any, source: str = "config") -> SearchSpec:
    """Build a spec from parsed YAML; unknown keys are refused."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise PredNASError(f"{source} must be a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - _FIELDS, key=str)
    if unknown:
        raise PredNASError(f"unknown key {unknown[0]!r} in {source}; expected some of: {', '.join(sorted(_FIELDS))}")
    values = dict(data)
    cost = values.pop("cost", None)
    if cost is not None:
        cost = _mapping("cost", cost, ("metric", "target", "window", "sample_in_window"))
        missing = [key for key in ("metric", "target", "window") if key not in cost]
        if missing:
            raise PredNASError(f"cost.{missing[0]} is missing; expected cost: {{metric, target, window}}")
        cost = CostTarget(**cost)
    resources = Resources(**_mapping("resources", values.pop("resources", None), tuple(Resources.__dataclass_fields__)))
    return SearchSpec(**values, cost=cost, resources=resources)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML)."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise PredNASError(f"bad override {item!r}; expected key=value, e.g. n=20 or gradient.steps=100")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of a config mapping with ``key=value`` / ``a.b=value`` overrides applied."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for item in overrides:
        path, value = parse_override(item)
        holder = out
        for part in path[:-1]:
            current = holder.get(part)
            holder[part] = dict(current) if isinstance(current, Mapping) else {}
            holder = holder[part]
        holder[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML config file; a missing, empty or malformed file is one line naming it."""
    import yaml

    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise PredNASError(f"config file {file} not found") from None
    except OSError as exc:
        raise PredNASError(f"cannot read config file {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PredNASError(f"config file {file} is not UTF-8 text; expected YAML") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PredNASError(f"malformed config {file}{where}: {problem}") from None
    if data is None:  # an empty file (or only comments) is a mistake, not a request for the defaults
        raise PredNASError(f"config file {file} is empty; expected a mapping of settings, e.g. space: nb201")
    if not isinstance(data, Mapping):
        raise PredNASError(f"config {file} must be a mapping of settings, got {type(data).__name__}")
    return dict(data)


def default_config_path() -> Path:
    """The packaged default config: NB201 / CIFAR-100 with the paper's N=30, K=40."""
    from importlib import resources

    return Path(str(resources.files("prednas.pipelines") / "configs" / "nb201-cifar100.yaml"))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SearchSpec:
    """Read a YAML config (default: ``default_config_path()``), apply overrides and validate."""
    file = Path(path) if path is not None else default_config_path()
    data = apply_overrides(read_yaml(file), list(overrides or []))
    return spec_from_dict(data, source=f"config {file.name}")


def with_changes(spec: SearchSpec, **changes: Any) -> SearchSpec:
    """A validated copy of ``spec`` with fields changed."""
    return replace(spec, **changes)
