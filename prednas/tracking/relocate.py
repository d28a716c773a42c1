"""Keep a local MLflow root (``runs/``) working after it is moved or copied.

A local search tracks into ``ROOT/mlflow.db`` with artifacts under ``ROOT/mlartifacts``.
MLflow's SQLite store records artifact locations as absolute ``file://`` URIs, so a moved
folder would point at the old place (plots missing in the UI, new artifacts written to the
old folder). ``anchor(root)`` rewrites every location under another folder's
``mlartifacts`` to this root's: experiments, runs, logged models and model versions. The
prednas commands that open a local root (``run``, ``ui``, ``runs``) call it first.

Deviation: MLflow has no relative artifact locations for a SQLite store without a server,
so the locations stay absolute and are re-anchored instead of being stored relative.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from prednas.errors import PredNASError

ARTIFACTS = "mlartifacts"
# (table, column) pairs of MLflow's SQLite schema that hold artifact locations
COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"),
           ("model_versions", "source"), ("model_versions", "storage_location"))
_PREFIX = re.compile(rf"^file://(/.*?)/{ARTIFACTS}(?=/|$)")


def anchor(root: str | Path) -> int:
    """Point every artifact location of ``root/mlflow.db`` at ``root/mlartifacts``; returns how many changed."""
    root = Path(root).absolute()
    database = root / "mlflow.db"
    if not database.is_file():
        return 0
    here = (root / ARTIFACTS).as_uri()
    try:
        with sqlite3.connect(database, timeout=30) as connection:
            tables = {name for (name,) in connection.execute("select name from sqlite_master where type='table'")}
            changed = 0
            for table, column in COLUMNS:
                if table not in tables:
                    continue
                rows = connection.execute(f"select rowid, {column} from {table} where {column} like 'file://%'")
                for rowid, value in rows.fetchall():
                    match = _PREFIX.match(value or "")
                    if match and f"file://{match.group(1)}/{ARTIFACTS}" != here:
                        connection.execute(f"update {table} set {column} = ? where rowid = ?",
                                           (here + value[match.end():], rowid))
                        changed += 1
            return changed
    except sqlite3.Error as exc:
        raise PredNASError(f"cannot update the artifact locations in {database}: {exc}") from None
