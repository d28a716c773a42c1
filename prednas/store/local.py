"""The local-directory backend (the embedded default).

Every write goes to a hidden temporary file in the target folder, is fsynced, and is then
published in one step: ``os.link`` for create-if-absent (atomic and exclusive on POSIX, so
two processes racing on one key cannot both win) and ``os.replace`` for artifacts. The
folder is fsynced afterwards so the new name survives a crash. A killed writer leaves only
a hidden ``.*.tmp`` file, which listings ignore. Filesystems without hard links fall back to
an existence check followed by ``os.replace`` (exclusive only between well-behaved writers).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from prednas.errors import PredNASError
from prednas.store.base import TripletStore

_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


@contextlib.contextmanager
def _io_errors(action: str, path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise PredNASError(f"cannot {action} {path}: {exc.strerror or exc}") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(TripletStore):
    """A store rooted at a local directory (created on first use)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.uri = self.root.as_uri()
        if self.root.exists() and not self.root.is_dir():
            raise PredNASError(f"store path {self.root} is a file; expected a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PredNASError(f"cannot create store directory {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PredNASError(f"store directory {self.root} is not writable")

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _staged(self, key: str, data: bytes) -> tuple[Path, Path]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return path, tmp

    def _create(self, key: str, data: bytes) -> bool:
        with _io_errors("write", self._path(key)):
            return self._link(key, data)

    def _link(self, key: str, data: bytes) -> bool:
        path, tmp = self._staged(key, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            if path.exists():
                return False
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(path.parent)
        return True

    def _write(self, key: str, data: bytes) -> None:
        with _io_errors("write", self._path(key)):
            path, tmp = self._staged(key, data)
            try:
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(path.parent)

    def _read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise PredNASError(f"store key {key} is a folder in {self.root}, not an object") from None
        except OSError as exc:
            raise PredNASError(f"cannot read {self._path(key)}: {exc.strerror or exc}") from None

    def _exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _keys(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            keys += [f"{rel}/{n}" if rel != "." else n for n in filenames if not n.startswith(".")]
        return sorted(keys)

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
