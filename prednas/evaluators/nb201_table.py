"""NAS-Bench-201 as an evaluator: answers queries from the packaged results table.

The table (``prednas/data/nb201.csv.gz``, provenance in ``prednas/data/README.md``) holds the
200-epoch accuracies of all 15,625 cells. The search signal is the validation column of
the chosen dataset (or the test column with ``signal="test"``); the test column is only
reported. Every distinct cell answered counts as one query (one trained network).
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluation
from prednas.spaces.nb201 import NB201Cell, NB201Space, parse_arch

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16_120")
SIGNALS: tuple[str, ...] = ("valid", "test")
TABLE_SHA256 = "4077a270f9d20c44f0243eb0b14071d7f302349fc285f90946dbc6d24a031e6b"
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16_120": 120}


@dataclass(frozen=True)
class NB201Table:
    """Columns of the NB201 table as arrays, indexed by NB201 index."""

    archs: tuple[str, ...]
    index: dict[str, int]
    columns: dict[str, np.ndarray]

    def row(self, arch: NB201Cell | str) -> int:
        """NB201 index of a cell."""
        return self.index[str(arch)]

    def value(self, column: str, arch: NB201Cell | str) -> float:
        """One cell's value in one column."""
        return float(self.columns[column][self.row(arch)])


def _default_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "nb201.csv.gz"


@functools.lru_cache(maxsize=4)
def load_table(path: str | None = None) -> NB201Table:
    """Load and verify the NB201 table (cached; about 0.1 s)."""
    file = Path(path) if path else _default_path()
    try:
        raw = file.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except FileNotFoundError:
        raise PredNASError(f"NB201 table not found at {file}; reinstall prednas") from None
    except (OSError, EOFError) as exc:
        raise PredNASError(f"NB201 table {file} is unreadable ({exc}); expected a gzip of nb201.csv") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != TABLE_SHA256:
        raise PredNASError(f"NB201 table {file} has sha256 {digest[:12]}..., expected {TABLE_SHA256[:12]}...")
    reader = csv.reader(io.StringIO(data.decode()))
    header = next(reader)
    rows = list(reader)
    archs = tuple(r[0] for r in rows)
    values = np.array([r[1:] for r in rows], dtype=np.float64)
    columns = {name: values[:, i] for i, name in enumerate(header[1:])}
    return NB201Table(archs, {a: i for i, a in enumerate(archs)}, columns)


def check_dataset(dataset: str) -> str:
    """Validate a dataset name."""
    if dataset not in DATASETS:
        raise PredNASError(f"unknown NB201 dataset {dataset!r}; expected one of: {', '.join(DATASETS)}")
    return dataset


class NB201TableEvaluator:
    """Answers NB201 queries from the table and counts the distinct cells queried."""

    name = "nb201-table"

    def __init__(self, dataset: str = "cifar100", signal: str = "valid", table: NB201Table | None = None) -> None:
        self.dataset = check_dataset(dataset)
        if signal not in SIGNALS:
            raise PredNASError(f"unknown search signal {signal!r}; expected one of: {', '.join(SIGNALS)}")
        self.signal = signal
        self.table = table or load_table()
        self.space = NB201Space(_NUM_CLASSES[dataset])
        self._signal = self.table.columns[f"{dataset}_{signal}"]
        self._test = self.table.columns[f"{dataset}_test"]
        self.queried: set[str] = set()

    @property
    def queries(self) -> int:
        """Number of distinct cells answered so far."""
        return len(self.queried)

    def config(self) -> dict[str, Any]:
        """Dataset, signal and table version."""
        return {"evaluator": self.name, "dataset": self.dataset, "signal": self.signal, "table": TABLE_SHA256[:12]}

    def evaluate(self, space: Any, arch: NB201Cell | str) -> Evaluation:
        """The search signal, cost and test accuracy of one cell; counts the query."""
        cell = parse_arch(arch) if isinstance(arch, str) else arch
        i = self.table.row(cell)
        self.queried.add(str(cell))
        return Evaluation(
            accuracy=float(self._signal[i]),
            cost=self.space.cost(cell),
            report={"test_accuracy": float(self._test[i])},
        )

    def signal_of(self, cell: NB201Cell) -> float:
        """The search signal without counting a query (for analysis only)."""
        return float(self._signal[self.table.row(cell)])

    def test_of(self, cell: NB201Cell) -> float:
        """The reported test accuracy without counting a query."""
        return float(self._test[self.table.row(cell)])
