"""An in-memory backend (``memory://NAME``): one process's store, gone when it exits.

It serves benchmarks and tests that run the pipeline's own steps many times in one
process, each search on a fresh store with nothing to clean up. Stores of one name are
shared within the process; writes are atomic under a lock, as the other backends' are.
"""

from __future__ import annotations

import threading

from prednas.store.base import TripletStore

_STORES: dict[str, dict[str, bytes]] = {}
_LOCK = threading.RLock()


class MemoryStore(TripletStore):
    """A store held in this process's memory under ``name``."""

    def __init__(self, name: str) -> None:
        self.name, self.uri = name, f"memory://{name}"

    @property
    def _objects(self) -> dict[str, bytes]:
        """This store's objects (a new, empty store after ``drop``)."""
        return _STORES.setdefault(self.name, {})

    def _create(self, key: str, data: bytes) -> bool:
        with _LOCK:
            if key in self._objects:
                return False
            self._objects[key] = bytes(data)
            return True

    def _write(self, key: str, data: bytes) -> None:
        with _LOCK:
            self._objects[key] = bytes(data)

    def _read(self, key: str) -> bytes | None:
        return self._objects.get(key)

    def _keys(self, prefix: str) -> list[str]:
        with _LOCK:
            return sorted(k for k in self._objects if k.startswith(prefix))

    def _delete(self, key: str) -> None:
        with _LOCK:
            self._objects.pop(key, None)


def drop(name: str) -> None:
    """Forget the store ``name`` (its objects are freed)."""
    with _LOCK:
        _STORES.pop(name, None)
