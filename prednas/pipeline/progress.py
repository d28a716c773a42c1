"""Progress lines of long steps: written with Python logging, read back from a run's log.

``prednas.pipeline.steps.evaluate`` logs one line when it starts and one when it finishes
(or reuses) each architecture of its shard; the training loops log one line per epoch
(``prednas.train.engine``), on the ``prednas.*`` loggers at INFO.

In a KFP step these lines reach the step's stdout, which is the Kubeflow log pane (and,
for ``prednas run``, ``runs/logs/<run key>.log``): every lightweight component runs in
``kfp.dsl.executor_main``, which configures the root logger once, at INFO, on stdout, and
the ``prednas`` loggers propagate to it. The library adds no handler of its own, so a
step's lines are never printed twice and a benchmark that runs thousands of evaluations
in one process stays quiet unless its caller configures logging. ``prednas run`` counts
the architectures done by parsing the same lines (``parse_arch``), from the step log or,
in-process, from the log records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ARCH = re.compile(r"evaluate (sample|final|round \d+) shard (\d+): arch (\d+)/(\d+) (started|finished|reused)\b")


def shard_prefix(stage: str, round_: int, index: int) -> str:
    """How progress lines name a shard: ``evaluate sample shard 1``, ``evaluate round 2 shard 1`` (top K)."""
    label = f"round {round_}" if stage == "top-k" else stage
    return f"evaluate {label} shard {index + 1}"


def arch_line(prefix: str, i: int, n: int, event: str, name: str, accuracy: float | None = None,
              seconds: float | None = None) -> str:
    """``evaluate round 2 shard 1: arch 3/8 finished <name> accuracy 71.23 in 12.3 s``."""
    line = f"{prefix}: arch {i}/{n} {event} {name}"
    if accuracy is not None:
        line += f" accuracy {accuracy:.2f}"
    if seconds is not None:
        line += f" in {seconds:.1f} s"
    return line


@dataclass(frozen=True)
class ArchEvent:
    """One parsed progress line of an architecture."""

    label: str
    shard: int
    index: int
    total: int
    event: str

    @property
    def key(self) -> tuple[str, int, int]:
        """Which architecture of the run it is (a retried step logs the same key again)."""
        return self.label, self.shard, self.index

    @property
    def done(self) -> bool:
        """Whether the architecture has its result (measured now or reused from the store)."""
        return self.event in ("finished", "reused")


def parse_arch(line: str) -> ArchEvent | None:
    """The architecture event of a log line, or None for any other line."""
    match = _ARCH.search(line)
    if match is None:
        return None
    label, shard, index, total, event = match.groups()
    return ArchEvent(label, int(shard), int(index), int(total), event)
