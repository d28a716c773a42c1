"""The triplet store: every measurement kept as its own object, written before it is used.

Layout (the same under a local directory and an S3 prefix)::

    triplets/{space}/{config_hash}/{arch_id}/{trial}.json   one measurement (see triplet.py)
    claims/{space}/{config_hash}/{arch_id}.json            advisory lease of a running evaluation
    artifacts/...                                           predictors, checkpoints, reports

A key is written once, by an atomic create-if-absent: parallel steps and overlapping runs
can never overwrite each other's trials, and a reader sees a whole object or none. Putting
the same trial twice (a retried step) is a no-op; a different measurement under an existing
trial id is refused. Backends implement five primitives; everything else lives here.
"""

from __future__ import annotations

import json
import time
from typing import Any

from prednas.errors import PredNASError
from prednas.store.triplet import HEX_RE, NAME_RE, Triplet, _text

RESERVED_PREFIXES = ("triplets/", "claims/")


def check_key(key: str) -> str:
    """A relative ``/``-separated key without empty, ``.`` or ``..`` segments."""
    parts = key.split("/") if isinstance(key, str) else [""]
    if not key or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise PredNASError(f"bad store key {key!r}; expected a relative path like 'artifacts/run/model.pt'")
    return key


def _artifact_key(key: str) -> str:
    check_key(key)
    if key.startswith(RESERVED_PREFIXES):
        raise PredNASError(f"key {key!r} is reserved for triplets and claims; use a key under 'artifacts/'")
    return key


def _prefix(space: str, config_hash: str, arch_id: str | None = None) -> str:
    _text("space", space, NAME_RE)
    _text("config_hash", config_hash, HEX_RE)
    if arch_id is None:
        return f"triplets/{space}/{config_hash}/"
    return f"triplets/{space}/{config_hash}/{_text('arch_id', arch_id, HEX_RE)}/"


def _parse(key: str, data: bytes) -> Triplet:
    """The verified triplet stored at ``key``; it must also be the triplet that belongs there."""
    triplet = Triplet.from_json(data, key=key)
    if triplet.key != key:
        raise PredNASError(f"triplet at {key} holds {triplet.key}; objects must not be moved or renamed")
    return triplet


def _order(triplet: Triplet) -> tuple[float, str]:
    return triplet.created_at, triplet.trial


class TripletStore:
    """Triplets and artifacts under one root; subclasses provide the storage primitives."""

    uri: str

    # -- primitives -------------------------------------------------------------------
    def _create(self, key: str, data: bytes) -> bool:
        """Write ``key`` atomically unless it exists; True when this call created it."""
        raise NotImplementedError

    def _write(self, key: str, data: bytes) -> None:
        """Write ``key`` atomically, replacing any previous object."""
        raise NotImplementedError

    def _read(self, key: str) -> bytes | None:
        """The object at ``key``, or None when there is none."""
        raise NotImplementedError

    def _keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (ending in ``/``), sorted."""
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        raise NotImplementedError

    def _exists(self, key: str) -> bool:
        """Whether ``key`` exists (backends may answer without reading it)."""
        return self._read(key) is not None

    def _read_many(self, keys: list[str]) -> list[bytes | None]:
        """Several objects at once (backends may read in parallel)."""
        return [self._read(k) for k in keys]

    # -- triplets ---------------------------------------------------------------------
    def put(self, triplet: Triplet) -> str:
        """Store one trial durably and return its key; the same trial again is a no-op."""
        key = triplet.key
        if self._create(key, triplet.to_json().encode()):
            return key
        existing = self._load(key)
        if existing != triplet:
            raise PredNASError(f"trial {triplet.trial} is already stored at {key} with other values; "
                               "each measurement needs its own trial id")
        return key

    def get(self, space: str, config_hash: str, arch_id: str) -> list[Triplet]:
        """Every trial of one architecture under one evaluator config, oldest first."""
        return self._load_all(_prefix(space, config_hash, arch_id))

    def lookup(self, space: str, config_hash: str, arch_id: str) -> Triplet | None:
        """The first trial of an architecture, or None when it was never measured."""
        trials = self.get(space, config_hash, arch_id)
        return trials[0] if trials else None

    def list(self, space: str, config_hash: str) -> list[Triplet]:
        """Every trial measured under one evaluator config, by creation time then trial id."""
        return self._load_all(_prefix(space, config_hash))

    def arch_ids(self, space: str, config_hash: str) -> set[str]:
        """Ids of the architectures measured under one config (from keys alone, no reads)."""
        prefix = _prefix(space, config_hash)
        return {k[len(prefix):].split("/", 1)[0] for k in self._keys(prefix) if k.endswith(".json")}

    def verify(self, space: str | None = None) -> list[tuple[str, str]]:
        """Check every stored triplet (of one space, or all); returns ``(key, problem)`` pairs."""
        prefix = f"triplets/{_text('space', space, NAME_RE)}/" if space else "triplets/"
        keys = [k for k in self._keys(prefix) if k.endswith(".json")]
        problems = []
        for key, data in zip(keys, self._read_many(keys), strict=True):
            try:
                _parse(key, data if data is not None else b"")
            except PredNASError as exc:
                problems.append((key, str(exc)))
        return problems

    def _load(self, key: str) -> Triplet:
        data = self._read(key)
        if data is None:
            raise PredNASError(f"no triplet at {self.uri} key {key}")
        return _parse(key, data)

    def _load_all(self, prefix: str) -> list[Triplet]:
        keys = [k for k in self._keys(prefix) if k.endswith(".json")]
        triplets = []
        for key, data in zip(keys, self._read_many(keys), strict=True):
            if data is not None:  # deleted between listing and reading
                triplets.append(_parse(key, data))
        return sorted(triplets, key=_order)

    # -- claims -----------------------------------------------------------------------
    def claim(self, space: str, config_hash: str, arch_id: str, owner: str, *, ttl_s: float = 3600.0) -> bool:
        """Advisory lease on evaluating one architecture; True when ``owner`` holds it.

        A claim held by another owner is honoured until it is ``ttl_s`` old, then taken over
        (its owner is presumed dead). Claims only avoid wasted work: two owners can still
        both evaluate (a takeover race, an expired lease), and both trials are then kept.
        """
        key = "claims/" + _prefix(space, config_hash, arch_id)[len("triplets/"):-1] + ".json"
        record = json.dumps({"owner": owner, "expires_at": time.time() + ttl_s}).encode()
        for _ in range(2):
            if self._create(key, record):
                return True
            holder = _claim_record(self._read(key))
            if holder.get("owner") == owner:
                return True
            expires = holder.get("expires_at")
            if isinstance(expires, int | float) and expires > time.time():
                return False
            self._delete(key)  # expired or unreadable: take it over
        return False

    def release(self, space: str, config_hash: str, arch_id: str, owner: str) -> None:
        """Drop ``owner``'s claim on an architecture (no-op when someone else holds it)."""
        key = "claims/" + _prefix(space, config_hash, arch_id)[len("triplets/"):-1] + ".json"
        if _claim_record(self._read(key)).get("owner") == owner:
            self._delete(key)

    # -- artifacts --------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> str:
        """Write an artifact atomically (replacing an older one) and return its key."""
        self._write(_artifact_key(key), bytes(data))
        return key

    def get_bytes(self, key: str) -> bytes:
        """The artifact at ``key``; a missing one raises PredNASError."""
        data = self._read(check_key(key))
        if data is None:
            raise PredNASError(f"no object at {self.uri} key {key}")
        return data

    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""
        return self._exists(check_key(key))

    def keys(self, prefix: str = "") -> list[str]:
        """Keys under a folder-like ``prefix`` ('' for all), sorted."""
        return self._keys(check_key(prefix.rstrip("/")) + "/" if prefix else "")

    def delete(self, key: str) -> None:
        """Remove an artifact (triplets are never deleted through this API)."""
        self._delete(_artifact_key(key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def _claim_record(data: bytes | None) -> dict[str, Any]:
    try:
        record = json.loads(data) if data else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}

