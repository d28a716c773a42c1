"""The search state the rounds hand on: what is known, what each round proposed, how the best grew.

Round r's fit step receives the state after round r - 1 with the triplets measured since
(``extended``), fits on it and records its predictor versions and the best-so-far point
(``fitted``); the round's search step records its picks (``proposed``). The state is a
value: each method returns a new one. Between pipeline steps it travels as one JSON
artifact (``write``/``read``), triplets checked again when read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prednas.errors import PredNASError
from prednas.store.triplet import Triplet


@dataclass(frozen=True)
class SearchState:
    """Every triplet the search knows, each round's picks, predictor versions and trajectory."""

    known: list[Triplet] = field(default_factory=list)
    picks: list[dict[str, Any]] = field(default_factory=list)  # {arch, predicted, round}
    versions: list[dict[str, Any]] = field(default_factory=list)  # per round: target -> registered version
    trajectory: list[dict[str, float]] = field(default_factory=list)  # best so far after each round
    stats: list[dict[str, float]] = field(default_factory=list)  # per round: the proposal's diagnostics

    @property
    def round(self) -> int:
        """Rounds fitted so far (the current round once its fit ran)."""
        return len(self.versions)

    def extended(self, triplets: list[Triplet]) -> SearchState:
        """This state with ``triplets`` added (a trial already known is not added twice)."""
        keys = {t.key for t in self.known}
        added = []
        for t in triplets:
            if t.key not in keys:
                keys.add(t.key)
                added.append(t)
        return replace(self, known=[*self.known, *added])

    def fitted(self, versions: dict[str, Any], point: dict[str, float]) -> SearchState:
        """This state after a round's fit: its predictor versions and the best-so-far before the round."""
        return replace(self, versions=[*self.versions, dict(versions)], trajectory=[*self.trajectory, dict(point)])

    def proposed(self, archs: list[dict[str, Any]], predicted: list[float], stats: dict[str, float]) -> SearchState:
        """This state after a round's search: the architectures it sends to be measured."""
        picks = [{"arch": a, "predicted": p, "round": self.round} for a, p in zip(archs, predicted, strict=True)]
        return replace(self, picks=[*self.picks, *picks], stats=[*self.stats, dict(stats)])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"known": [json.loads(t.to_json()) for t in self.known], "picks": self.picks,
                "versions": self.versions, "trajectory": self.trajectory, "stats": self.stats}

    @classmethod
    def from_dict(cls, data: Any, where: str = "search state") -> SearchState:
        """Parse the JSON form, verifying every triplet."""
        names = ("known", "picks", "versions", "trajectory", "stats")
        if not isinstance(data, dict) or not set(names) <= set(data):
            raise PredNASError(f"malformed {where}; expected an object with {', '.join(names)}")
        known = []
        for i, row in enumerate(data["known"]):
            try:
                known.append(Triplet.from_json(json.dumps(row)))
            except PredNASError as exc:
                raise PredNASError(f"triplet {i} of {where}: {exc}") from None
        return cls(known, list(data["picks"]), list(data["versions"]), list(data["trajectory"]), list(data["stats"]))

    def write(self, path: str | Path) -> None:
        """Save the JSON form (an artifact between steps)."""
        Path(path).write_text(json.dumps(self.to_dict(), sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> SearchState:
        """Load what ``write`` saved."""
        from prednas.pipeline.exchange import read_json

        return cls.from_dict(read_json(path), where=f"search state {path}")
