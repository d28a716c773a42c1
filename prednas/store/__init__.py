"""Where measured triplets and run artifacts live: a local directory or an S3 prefix.

``open_store(uri)`` accepts a directory path or ``file://`` URI (the embedded default) or
``s3://bucket[/prefix]``; ``memory://name`` holds one process's store in memory (benchmarks,
tests). See ``base.py`` for the layout and write guarantees and
``triplet.py`` for the checked object format.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from prednas.errors import PredNASError
from prednas.store.base import TripletStore
from prednas.store.triplet import STAGES, Triplet, training_hash, triplet_key


def open_store(uri: str) -> TripletStore:
    """The store at ``uri``: a directory, ``file:///path`` or ``s3://bucket/prefix``."""
    if not isinstance(uri, str) or not uri.strip():
        raise PredNASError(f"bad store URI {uri!r}; expected a directory, file:///path or s3://bucket/prefix")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise PredNASError(f"bad S3 store URI {uri!r}; expected s3://bucket[/prefix]")
        from prednas.store.s3 import S3Store

        return S3Store(parsed.netloc, unquote(parsed.path))
    if parsed.scheme == "memory":
        if not parsed.netloc:
            raise PredNASError(f"bad memory store URI {uri!r}; expected memory://name")
        from prednas.store.memory import MemoryStore

        return MemoryStore(parsed.netloc)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise PredNASError(f"bad file URI {uri!r}; expected file:///absolute/path")
        return _local(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise PredNASError(f"unsupported store URI scheme {parsed.scheme!r} in {uri!r}; "
                           "expected a path, file://, s3:// or memory://")
    return _local(uri)


def _local(path: str) -> TripletStore:
    from prednas.store.local import LocalStore

    return LocalStore(Path(path))


__all__ = ["STAGES", "Triplet", "TripletStore", "open_store", "training_hash", "triplet_key"]
