"""Per-epoch training checkpoints: atomic on disk, mirrored to an artifact store, loaded safely.

A checkpoint is one ``torch.save`` payload ``{"format", "fingerprint", "epoch", "state"}``
where ``state`` holds only tensors, numbers, strings, lists and dicts (model, optimizer,
scheduler, grad-scaler and generator states, the metrics so far), so it loads with
``torch.load(weights_only=True)`` and never unpickles code. The payload is preceded by a
magic line and its SHA-256, checked before anything is unpickled, so a damaged file is
recognised as such (``read_checkpoint`` opens one by hand). The file is written to a
temporary name in the same folder, flushed, fsynced and renamed over the old one, so a
process killed at any moment (out of memory, pre-empted) leaves the previous epoch's
checkpoint whole. The same bytes go to the store (``put_bytes(key, data)``); a restarted
step on another machine finds them there (``get_bytes(key)``) when its folder is empty.

The fingerprint hashes everything that determines the run (architecture, recipe, data,
seed, precision); a checkpoint with another fingerprint, or one that does not load, is
set aside with a warning and training starts over.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Protocol

import torch

FORMAT = 1
MAGIC = b"PREDNAS-CHECKPOINT-1\n"
log = logging.getLogger("prednas.train")


class BlobStore(Protocol):
    """The two calls a checkpoint needs from an artifact store."""

    def put_bytes(self, key: str, data: bytes) -> Any:
        """Store ``data`` under ``key`` (atomically)."""

    def get_bytes(self, key: str) -> bytes | None:
        """The bytes under ``key`` (None or KeyError when missing, unless ``exists`` says so first)."""


def fingerprint(payload: dict[str, Any]) -> str:
    """Stable 16-hex-digit hash of what determines a training run."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def encode(fp: str, epoch: int, state: dict[str, Any]) -> bytes:
    """Serialise one checkpoint: magic line, SHA-256 of the payload, ``torch.save`` payload."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "fingerprint": fp, "epoch": epoch, "state": state}, buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(data: bytes, origin: str) -> dict[str, Any] | None:
    """Check and load one checkpoint with ``weights_only=True``; None (and a warning) when it does not load."""
    head = len(MAGIC) + 32
    if data[: len(MAGIC)] != MAGIC or hashlib.sha256(data[head:]).digest() != data[len(MAGIC):head]:
        log.warning("checkpoint %s is damaged or not a prednas checkpoint; training starts over", origin)
        return None
    try:
        payload = torch.load(io.BytesIO(data[head:]), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        log.warning("checkpoint %s does not load (%s); training starts over", origin, str(exc).splitlines()[0])
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        log.warning("checkpoint %s has an unknown format; training starts over", origin)
        return None
    return payload


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Open a checkpoint file (for inspection): ``{"format", "fingerprint", "epoch", "state"}``."""
    from prednas.errors import PredNASError

    payload = decode(Path(path).read_bytes(), str(path))
    if payload is None:
        raise PredNASError(f"{path} is not a readable prednas checkpoint")
    return payload


class Checkpointer:
    """Saves and finds the latest checkpoint of one training run (a folder and/or a store key)."""

    def __init__(self, fp: str, directory: str | Path | None = None, store: BlobStore | None = None,
                 key: str | None = None) -> None:
        self.fingerprint = fp
        self.path = Path(directory) / f"{fp}.pt" if directory is not None else None
        self.store = store
        self.key = key or f"artifacts/checkpoints/{fp}.pt"

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Write the checkpoint after ``epoch`` epochs (1-based count of finished epochs)."""
        data = encode(self.fingerprint, epoch, state)
        if self.path is not None:
            write_atomic(self.path, data)
        if self.store is not None:
            self.store.put_bytes(self.key, data)

    def load(self) -> tuple[int, dict[str, Any]] | None:
        """``(epochs done, state)`` of the newest usable checkpoint, or None."""
        found = []
        if self.path is not None and self.path.is_file():
            found.append((self.path.read_bytes(), str(self.path)))
        if self.store is not None:
            data = self._fetch()
            if data is not None:
                found.append((data, f"store:{self.key}"))
        best = None
        for data, origin in found:
            payload = decode(data, origin)
            if payload is None:
                continue
            if payload["fingerprint"] != self.fingerprint:
                log.warning("checkpoint %s belongs to another run (%s); training starts over",
                            origin, payload["fingerprint"])
                continue
            if best is None or payload["epoch"] > best[0]:
                best = (int(payload["epoch"]), payload["state"])
        return best

    def _fetch(self) -> bytes | None:
        store: Any = self.store
        if hasattr(store, "exists") and not store.exists(self.key):
            return None
        try:
            return store.get_bytes(self.key)
        except (KeyError, FileNotFoundError):
            return None
