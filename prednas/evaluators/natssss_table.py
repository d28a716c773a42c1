"""NATS-Bench sss as an evaluator: answers queries from the packaged results table.

The table (``prednas/data/natssss.csv.gz``, provenance in ``prednas/data/README.md``) holds
the 90-epoch test accuracies of all 32,768 architectures on CIFAR-10, CIFAR-100 and
ImageNet16-120. It has no validation column, so the search signal is the test accuracy
(``signal="test"``, the only choice): figures from it measure how well a search optimises
the benchmark, not how it generalises. Every distinct architecture answered counts as one
query. Costs are the space's analytic ones, which equal NATS-Bench's.
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
from prednas.spaces.natssss import NatsSssArch, NatsSssSpace, parse_arch_string

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16_120")
SIGNALS: tuple[str, ...] = ("test",)
TABLE_SHA256 = "34b6ead9a78d625a5b223e6631b6b2d67be131effe6edf11643b27030e474616"
SHAPES: dict[str, tuple[int, int]] = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet16_120": (120, 16)}


@dataclass(frozen=True)
class NatsSssTable:
    """The test accuracy columns, indexed by NATS-Bench index."""

    columns: dict[str, np.ndarray]

    def value(self, column: str, arch: NatsSssArch) -> float:
        """One architecture's value in one column."""
        return float(self.columns[column][arch.index])


def _default_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "natssss.csv.gz"


@functools.lru_cache(maxsize=4)
def load_table(path: str | None = None) -> NatsSssTable:
    """Load and verify the NATS-Bench sss table (cached); rows are in NATS-Bench index order."""
    file = Path(path) if path else _default_path()
    try:
        raw = file.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except FileNotFoundError:
        raise PredNASError(f"NATS-Bench sss table not found at {file}; reinstall prednas") from None
    except (OSError, EOFError) as exc:
        raise PredNASError(f"NATS-Bench sss table {file} is unreadable ({exc}); "
                           "expected a gzip of natssss.csv") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != TABLE_SHA256:
        raise PredNASError(f"NATS-Bench sss table {file} has sha256 {digest[:12]}..., expected {TABLE_SHA256[:12]}...")
    reader = csv.reader(io.StringIO(data.decode()))
    header = next(reader)
    rows = list(reader)
    values = np.array([r[1:] for r in rows], dtype=np.float64)
    return NatsSssTable({name: values[:, i] for i, name in enumerate(header[1:])})


def check_dataset(dataset: Any) -> str:
    """Validate a dataset name."""
    if dataset not in DATASETS:
        raise PredNASError(f"unknown NATS-Bench sss dataset {dataset!r} (evaluator option 'dataset'); "
                           f"expected one of: {', '.join(DATASETS)}")
    return dataset


def dataset_space(dataset: str) -> NatsSssSpace:
    """The space with the dataset's class count and input size (its costs are that network's).

    One instance per dataset, so what a search caches on its space (its classes, those in a
    cost window) is computed once per process, not once per step.
    """
    return _space(check_dataset(dataset))  # checked first: an unhashable name gets the one-line error


@functools.cache
def _space(dataset: str) -> NatsSssSpace:
    num_classes, input_size = SHAPES[dataset]
    return NatsSssSpace(num_classes, input_size)


class NatsSssTableEvaluator:
    """Answers NATS-Bench sss queries from the table and counts the distinct architectures queried."""

    name = "natssss-table"

    def __init__(self, dataset: str = "cifar100", signal: str = "test", table: NatsSssTable | None = None) -> None:
        self.dataset = check_dataset(dataset)
        if signal not in SIGNALS:
            raise PredNASError(f"unknown search signal {signal!r} (evaluator option 'signal'); the NATS-Bench sss "
                               f"table has only: {', '.join(SIGNALS)}")
        self.signal = signal
        self.table = table or load_table()
        self.space = dataset_space(dataset)
        self._test = self.table.columns[f"{dataset}_test"]
        self.queried: set[str] = set()

    @property
    def queries(self) -> int:
        """Number of distinct architectures answered so far."""
        return len(self.queried)

    def config(self) -> dict[str, Any]:
        """Dataset, signal and table version."""
        return {"evaluator": self.name, "dataset": self.dataset, "signal": self.signal, "table": TABLE_SHA256[:12]}

    def evaluate(self, space: Any, arch: NatsSssArch | str) -> Evaluation:
        """The search signal (test accuracy), cost and test accuracy of one architecture; counts the query."""
        arch = parse_arch_string(arch) if isinstance(arch, str) else arch
        if not isinstance(arch, NatsSssArch):
            raise PredNASError(f"evaluator {self.name!r} measures natssss architectures, got {type(arch).__name__}")
        self.queried.add(str(arch))
        return Evaluation(
            accuracy=float(self._test[arch.index]),
            cost=self.space.cost(arch),
            report={"test_accuracy": float(self._test[arch.index])},
        )

    def signal_of(self, arch: NatsSssArch) -> float:
        """The search signal without counting a query (for analysis only)."""
        return float(self._test[arch.index])

    def test_of(self, arch: NatsSssArch) -> float:
        """The reported test accuracy without counting a query."""
        return float(self._test[arch.index])

    def test_column(self) -> np.ndarray:
        """Test accuracy of every architecture in NATS-Bench index order (read-only view; no query counted)."""
        view = self._test.view()
        view.flags.writeable = False
        return view
