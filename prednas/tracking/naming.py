"""Names that tell runs apart in the MLflow UI.

- A search's parent run: ``{space}-{dataset}-s{seed}-{id}``, e.g. ``nb201-cifar100-s0-3fa2``,
  where ``id`` is the first four hex digits of the SHA-1 of the run key (the run key itself
  is the ``prednas.run_key`` tag, which is what "Group by" uses).
- A child run (one measured architecture): NB201's own arch string, NATS-Bench's channel
  string, or a short size summary for AnyNet / YOLOX (per-stage depths and widths and the
  analytic MACs), so a table of children is readable without opening them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

NAME_LIMIT = 250  # kept well inside MLflow's run-name limit
_LABEL = re.compile(r"[^a-z0-9_]+")


def short_id(run_key: str, digits: int = 4) -> str:
    """The first ``digits`` hex digits of the SHA-1 of ``run_key``."""
    return hashlib.sha1(run_key.encode()).hexdigest()[:digits]


def dataset_label(evaluator: Mapping[str, Any]) -> str:
    """What the evaluator measures on, in a few lowercase characters (``cifar100``, ``imagenet``, ``coco``)."""
    if evaluator.get("dataset"):
        return _clean(str(evaluator["dataset"]))
    data = evaluator.get("data") if isinstance(evaluator.get("data"), Mapping) else {}
    source = str(data.get("source") or "")
    if source in ("cifar10", "cifar100"):
        return source
    where = data.get("path") or data.get("root") or data.get("train_annotations") or ""
    parts = [p for p in PurePosixPath(str(where)).parts if p not in ("/", "train", "val", "annotations")]
    stem = PurePosixPath(parts[-1]).stem if parts else ""
    return _clean(stem or source or str(evaluator.get("name") or "data"))


def search_name(space: str, evaluator: Mapping[str, Any], seed: int, run_key: str) -> str:
    """The parent run's name: space, dataset, seed and a short id of the run key."""
    return f"{_clean(space)}-{dataset_label(evaluator)}-s{seed}-{short_id(run_key)}"


def child_name(arch: Mapping[str, Any], cost: Mapping[str, float] | None = None) -> str:
    """A readable name for a measured architecture (its JSON form and analytic cost)."""
    if isinstance(arch.get("arch"), str):
        return arch["arch"][:NAME_LIMIT]  # NB201's arch string
    if _ints(arch.get("channels")):
        return ":".join(str(c) for c in arch["channels"])  # NATS-Bench sss
    macs = _si((cost or {}).get("macs"))
    if _ints(arch.get("depths")) and _ints(arch.get("widths")):  # AnyNet
        name = f"d{_dotted(arch['depths'])} w{_dotted(arch['widths'])}"
        return f"{name} {macs}MACs" if macs else name
    backbone, neck = arch.get("backbone"), arch.get("neck")
    if isinstance(backbone, Mapping) and isinstance(neck, Mapping):  # YOLOX
        name = (f"stem{arch.get('stem')} bb d{_dotted(backbone.get('depths', ()))} "
                f"w{_dotted(backbone.get('widths', ()))} neck d{_dotted(neck.get('depths', ()))}")
        return f"{name} {macs}MACs" if macs else name
    return (" ".join(f"{k}={v}" for k, v in sorted(arch.items())))[:NAME_LIMIT]


def _clean(text: str) -> str:
    return _LABEL.sub("_", text.lower()).strip("_")[:24] or "x"


def _ints(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and bool(value) \
        and all(isinstance(v, int) for v in value)


def _dotted(values: Sequence[Any]) -> str:
    return ".".join(str(v) for v in values)


def _si(value: float | None) -> str:
    if value is None:
        return ""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:.0f}"
