"""One measured architecture as a self-checking JSON object (the paper's triplet, Sec. III-A).

PredNAS fits its predictors on (architecture, accuracy, cost) triplets. Each measurement is
stored as its own object, so what a triplet carries must be enough to trust it alone: the
space and architecture, the evaluator config that produced the numbers, the numbers, which
search stage asked for it, and a unique trial id (two measurements of one architecture are
two trials, never one overwriting the other).

The JSON form holds a ``sha256`` of its canonical body and a ``schema`` version. Reading
verifies the checksum, the schema, and that ``arch_id`` and ``config_hash`` really are the
hashes of ``arch`` and ``evaluator``, so a truncated, hand-edited or misplaced object is
reported instead of feeding a predictor. Deviation from the paper: none (storage format).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from types import SimpleNamespace
from typing import Any

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluation, config_hash
from prednas.spaces.base import arch_id as space_arch_id

SCHEMA = 1
STAGES = ("sample", "top-k", "final")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # safe as one key segment
HEX_RE = re.compile(r"^[0-9a-f]{8,64}$")


def canonical_json(data: Any) -> str:
    """Deterministic compact JSON (sorted keys, no NaN) used for hashing."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def triplet_key(space: str, config_hash: str, arch_id: str, trial: str) -> str:
    """The store key of one trial: ``triplets/{space}/{config_hash}/{arch_id}/{trial}.json``."""
    return f"triplets/{space}/{config_hash}/{arch_id}/{trial}.json"


def _arch_id_of(space: str, arch: Mapping[str, Any]) -> str:
    # The same formula as prednas.spaces.arch_id, fed the stored dict directly.
    return space_arch_id(SimpleNamespace(name=space, to_dict=lambda _: arch), None)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PredNASError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _numbers(name: str, values: Any) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise PredNASError(f"{name} must be a mapping of names to numbers, got {type(values).__name__}")
    return {str(k): _number(f"{name}[{k!r}]", v) for k, v in values.items()}


def _text(name: str, value: Any, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise PredNASError(f"{name} must match {pattern.pattern}, got {value!r}")
    return value


@dataclass(frozen=True)
class Triplet:
    """One measurement of one architecture under one evaluator config."""

    space: str
    arch: dict[str, Any]
    arch_id: str
    config_hash: str
    evaluator: dict[str, Any]
    accuracy: float
    cost: dict[str, float]
    report: dict[str, float] = field(default_factory=dict)
    stage: str = "sample"
    trial: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    run_id: str | None = None

    def __post_init__(self) -> None:
        _text("space", self.space, NAME_RE)
        _text("arch_id", self.arch_id, HEX_RE)
        _text("config_hash", self.config_hash, HEX_RE)
        _text("trial", self.trial, NAME_RE)
        if self.stage not in STAGES:
            raise PredNASError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if not isinstance(self.arch, Mapping) or not isinstance(self.evaluator, Mapping):
            raise PredNASError("arch and evaluator must be JSON objects")
        if self.run_id is not None and not isinstance(self.run_id, str):
            raise PredNASError(f"run_id must be a string or null, got {self.run_id!r}")
        set_ = object.__setattr__  # normalise numbers once; the value stays frozen
        set_(self, "arch", dict(self.arch))
        set_(self, "evaluator", dict(self.evaluator))
        set_(self, "accuracy", _number("accuracy", self.accuracy))
        set_(self, "cost", _numbers("cost", self.cost))
        set_(self, "report", _numbers("report", self.report))
        set_(self, "created_at", _number("created_at", self.created_at))
        if _arch_id_of(self.space, self.arch) != self.arch_id:
            raise PredNASError(f"arch_id {self.arch_id} is not the id of arch {canonical_json(self.arch)}")
        if config_hash(self.evaluator) != self.config_hash:
            raise PredNASError(f"config_hash {self.config_hash} is not the hash of evaluator config {self.evaluator}")

    def __hash__(self) -> int:  # equal triplets share a key; the dict fields are not hashable
        return hash(self.key)

    @classmethod
    def create(cls, space: Any, arch: Any, evaluator_config: Mapping[str, Any], evaluation: Evaluation, *,
               stage: str, run_id: str | None = None) -> Triplet:
        """A new trial of ``arch`` measured by ``evaluation`` (fresh trial id and timestamp)."""
        config = dict(evaluator_config)
        return cls(space=space.name, arch=space.to_dict(arch), arch_id=space_arch_id(space, arch),
                   config_hash=config_hash(config), evaluator=config, accuracy=evaluation.accuracy,
                   cost=dict(evaluation.cost), report=dict(evaluation.report), stage=stage, run_id=run_id)

    @property
    def key(self) -> str:
        """Where this trial lives in a store."""
        return triplet_key(self.space, self.config_hash, self.arch_id, self.trial)

    def evaluation(self) -> Evaluation:
        """The measured numbers as an ``Evaluation``."""
        return Evaluation(accuracy=self.accuracy, cost=dict(self.cost), report=dict(self.report))

    def row(self) -> dict[str, Any]:
        """A flat record for tables: ids, stage, accuracy, each cost and report value."""
        row: dict[str, Any] = {"arch_id": self.arch_id, "arch": canonical_json(self.arch), "stage": self.stage,
                               "trial": self.trial, "created_at": self.created_at, "accuracy": self.accuracy}
        row.update(self.cost)
        row.update({k if k not in row else f"report.{k}": v for k, v in self.report.items()})
        return row

    def to_json(self) -> str:
        """The stored form: the fields, ``schema`` and a ``sha256`` of the canonical body."""
        body = {"schema": SCHEMA, **asdict(self)}
        return json.dumps({**body, "sha256": _digest(body)}, sort_keys=True, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, key: str | None = None) -> Triplet:
        """Parse and verify a stored triplet; anything corrupt raises PredNASError naming ``key`` (a label)."""
        where = key or "<triplet>"
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PredNASError(f"corrupt triplet {where}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise PredNASError(f"corrupt triplet {where}: expected a JSON object, got {type(data).__name__}")
        checksum = data.pop("sha256", None)
        try:
            digest = _digest(data)
        except ValueError as exc:
            raise PredNASError(f"corrupt triplet {where}: {exc}") from None
        if checksum != digest:
            raise PredNASError(f"corrupt triplet {where}: sha256 mismatch (stored {checksum!r}, computed {digest})")
        if data.pop("schema", None) != SCHEMA:
            raise PredNASError(f"unsupported triplet schema in {where}; expected {SCHEMA}")
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise PredNASError(f"corrupt triplet {where}: fields {sorted(set(data) ^ names)} missing or unexpected")
        try:
            triplet = cls(**data)
        except PredNASError as exc:
            raise PredNASError(f"invalid triplet {where}: {exc}") from None
        return triplet


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def training_hash(triplets: Iterable[Triplet]) -> str:
    """Order-independent 16-hex-digit digest of a set of trials (identifies a training set)."""
    keys = sorted(f"{t.key}:{_digest(asdict(t))}" for t in triplets)
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
