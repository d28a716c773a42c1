"""What crosses step boundaries: shards, triplet files, the run reference and seeds.

Every value passed between steps is JSON: a *shard* is a JSON string (one ParallelFor
item) holding a stage, an index and architecture dicts; a *triplet file* is a JSON list of
stored triplet objects, checked again (checksum, ids) when read. A ``RunRef`` names where
the search writes (triplet store, tracking server, experiment, parent run) and opens them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.store.triplet import Triplet

# Independent random streams per step, so a step's draws do not depend on another's.
STREAMS = {"sample": 0, "fit": 1, "search": 2, "top-up": 3, "cv": 4}


def rng_for(seed: int, stream: str, round_: int = 0) -> np.random.Generator:
    """The generator of one step's stream under the search seed (per round for the rounds' steps)."""
    return np.random.default_rng([int(seed), STREAMS[stream], *([int(round_)] if round_ else [])])


def seed_for(seed: int, stream: str, round_: int = 0) -> int:
    """An integer seed (for torch) drawn from one step's stream."""
    return int(rng_for(seed, stream, round_).integers(0, 2**31 - 1))


def make_shards(stage: str, archs: Sequence[dict[str, Any]], shards: int, *, round_: int = 0) -> list[str]:
    """Split architecture dicts into at most ``shards`` round-robin shards (at least one, maybe empty).

    A top-K shard names its round (1..R); the sample and final stages' shards carry round 0.
    """
    count = max(1, min(shards, len(archs)))
    return [json.dumps({"stage": stage, "index": i, "round": round_, "archs": list(archs[i::count])},
                       sort_keys=True) for i in range(count)]


def shard_round(payload: str) -> int:
    """The round a shard belongs to (0 when it names none)."""
    try:
        return int(json.loads(payload).get("round", 0))
    except (ValueError, TypeError, AttributeError):
        raise PredNASError(f"malformed shard {payload[:80]!r}; expected JSON with stage, index and archs") from None


def parse_shard(payload: str) -> tuple[str, int, list[dict[str, Any]]]:
    """(stage, index, architecture dicts) of a shard payload."""
    try:
        data = json.loads(payload)
        stage, index, archs = data["stage"], int(data["index"]), list(data["archs"])
    except (ValueError, TypeError, KeyError):
        raise PredNASError(f"malformed shard {payload[:80]!r}; expected JSON with stage, index and archs") from None
    return stage, index, archs


def write_triplets(path: str | Path, triplets: Iterable[Triplet]) -> None:
    """A triplet file: a JSON list of stored triplet objects."""
    rows = [json.loads(t.to_json()) for t in triplets]
    Path(path).write_text(json.dumps(rows, sort_keys=True) + "\n")


def read_triplets(paths: str | Path | Iterable[str | Path]) -> list[Triplet]:
    """Every triplet in one or more triplet files, verified, in file order."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Triplet] = []
    for path in paths:
        try:
            rows = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise PredNASError(f"cannot read triplet file {path}: {exc}") from None
        for i, row in enumerate(rows):
            try:
                out.append(Triplet.from_json(json.dumps(row)))
            except PredNASError as exc:
                raise PredNASError(f"triplet {i} of {path}: {exc}") from None
    return out


def unique_by_key(triplets: Iterable[Triplet]) -> list[Triplet]:
    """Triplets with duplicate store keys dropped, first kept, order kept."""
    seen: set[str] = set()
    out = []
    for t in triplets:
        if t.key not in seen:
            seen.add(t.key)
            out.append(t)
    return out


def write_json(path: str | Path, data: Any) -> None:
    """Write a JSON document."""
    Path(path).write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON document a previous step wrote."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PredNASError(f"cannot read {path}: {exc}") from None


@dataclass(frozen=True)
class RunRef:
    """Where one search writes: its triplet store, tracking server, experiment and parent run.

    Stores and trackers are opened once per process and reused (opening an MLflow client
    checks the database schema, which costs about a second on SQLite).
    """

    store_uri: str
    tracking_uri: str
    experiment: str
    parent_run_id: str = ""

    def store(self) -> Any:
        """The triplet store."""
        return _store(self.store_uri)

    def tracker(self) -> Any:
        """A tracker attached to the parent run (when there is one)."""
        tracker = _tracker(self.tracking_uri, self.experiment)
        if self.parent_run_id:
            tracker.attach(self.parent_run_id)
        return tracker


@functools.lru_cache(maxsize=8)
def _store(uri: str) -> Any:
    from prednas.store import open_store

    return open_store(uri)


@functools.lru_cache(maxsize=8)
def _tracker(uri: str, experiment: str) -> Any:
    from prednas.tracking.null import NONE_URI, NullTracker

    if uri == NONE_URI:
        return NullTracker()
    from prednas.tracking import Tracker

    return Tracker(uri, experiment)
