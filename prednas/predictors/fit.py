"""Fitting a predictor on measured triplets (paper Sec. III-C and IV).

Huber loss on standardised targets; SGD with momentum 0.9, learning rate 0.01 with cosine
decay and weight decay 1e-4, as the paper states. The epoch count and batch size are not
in the paper; ours are in ``FitConfig``.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prednas.errors import PredNASError
from prednas.predictors.gcn import GCNPredictor
from prednas.predictors.mlp import MLPPredictor


@dataclass(frozen=True)
class FitConfig:
    """Predictor training recipe."""

    epochs: int = 300
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    huber_delta: float = 1.0


def build_network(space: Any) -> nn.Module:
    """GCN for a topology space, MLP for a size space."""
    if space.kind == "topology":
        return GCNPredictor(space.adjacency, space.encoding_shape[-1])
    return MLPPredictor(int(np.prod(space.encoding_shape)))


class Predictor:
    """A fitted network plus the target standardisation; predicts in target units."""

    def __init__(self, space: Any, network: nn.Module, mean: float, std: float) -> None:
        self.space = space
        self.network = network.eval()
        self.mean = mean
        self.std = std

    def __call__(self, encodings: torch.Tensor) -> torch.Tensor:
        """Standardised score of relaxed encodings (differentiable; for gradient search)."""
        return self.network(encodings)

    def predict(self, encodings: np.ndarray) -> np.ndarray:
        """Predicted targets, in the units they were fitted in."""
        with torch.no_grad():
            z = self.network(torch.as_tensor(np.asarray(encodings, dtype=np.float32)))
        return z.numpy().astype(np.float64) * self.std + self.mean

    def predict_archs(self, archs: list[Any]) -> np.ndarray:
        """Predicted targets of architectures."""
        if not archs:
            return np.zeros(0)
        return self.predict(np.stack([self.space.encode(a) for a in archs]))

    def state_bytes(self) -> bytes:
        """Weights and standardisation, loadable with ``torch.load(weights_only=True)``."""
        buf = io.BytesIO()
        torch.save({"state_dict": self.network.state_dict(), "mean": self.mean, "std": self.std}, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, space: Any, data: bytes) -> Predictor | Ensemble:
        """Inverse of ``state_bytes`` (and of ``Ensemble.state_bytes``); refuses anything but tensors and numbers."""
        try:
            state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
            if "members" in state:
                return Ensemble([cls._from_state(space, m) for m in state["members"]])
            return cls._from_state(space, state)
        except Exception as exc:  # noqa: BLE001 - any failure means the file is not ours
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PredNASError(f"not a prednas predictor for space {space.name!r}: {reason}") from None

    @classmethod
    def _from_state(cls, space: Any, state: dict[str, Any]) -> Predictor:
        network = build_network(space)
        network.load_state_dict(state["state_dict"])
        return cls(space, network, float(state["mean"]), float(state["std"]))


class Ensemble:
    """Several predictors of one target acting as one: the mean is the score, the spread the uncertainty."""

    def __init__(self, members: list[Predictor]) -> None:
        if not members:
            raise PredNASError("an ensemble needs at least one member")
        self.members = members
        self.space = members[0].space

    def __call__(self, encodings: torch.Tensor) -> torch.Tensor:
        """Mean standardised score (differentiable; for gradient search)."""
        return torch.stack([m(encodings) for m in self.members]).mean(dim=0)

    def predict(self, encodings: np.ndarray) -> np.ndarray:
        """Mean prediction of encodings, in target units."""
        return np.mean([m.predict(encodings) for m in self.members], axis=0)

    def predict_archs(self, archs: list[Any]) -> np.ndarray:
        """Mean prediction, in target units."""
        return self.predict_with_std(archs)[0]

    def predict_with_std(self, archs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the members' predictions."""
        if not archs:
            return np.zeros(0), np.zeros(0)
        encodings = np.stack([self.space.encode(a) for a in archs])
        preds = np.stack([m.predict(encodings) for m in self.members])
        return preds.mean(axis=0), preds.std(axis=0)

    def state_bytes(self) -> bytes:
        """Every member's weights and standardisation, loadable with ``Predictor.from_bytes``."""
        buf = io.BytesIO()
        torch.save({"members": [{"state_dict": m.network.state_dict(), "mean": m.mean, "std": m.std}
                                for m in self.members]}, buf)
        return buf.getvalue()


def fit_predictor(
    space: Any,
    encodings: np.ndarray,
    targets: np.ndarray,
    *,
    seed: int,
    config: FitConfig = FitConfig(),
    init: dict[str, torch.Tensor] | None = None,
) -> Predictor:
    """Train a predictor for ``space`` on (encoding, target) pairs, from scratch or from ``init`` weights."""
    x = torch.as_tensor(np.asarray(encodings, dtype=np.float32))
    y = np.asarray(targets, dtype=np.float64)
    if len(x) < 2 or len(x) != len(y) or not np.all(np.isfinite(y)):
        raise PredNASError(f"a predictor needs at least 2 finite targets, got {len(y)}")
    mean, std = float(y.mean()), float(y.std()) or 1.0
    z = torch.as_tensor((y - mean) / std, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network(space)
        if init is not None:
            network.load_state_dict(init)
        _train(network, x, z, config)
    return Predictor(space, network, mean, std)


def fit_ensemble(space: Any, encodings: np.ndarray, targets: np.ndarray, *, seed: int, members: int,
                 config: FitConfig = FitConfig(), init: dict[str, torch.Tensor] | None = None) -> Predictor | Ensemble:
    """``members`` predictors fitted from seeds ``seed, seed + 1000, ...``; a lone Predictor when ``members`` is 1.

    Member 0 is exactly ``fit_predictor(..., seed=seed)``, so one member reproduces a single fit.
    """
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise PredNASError(f"predictor members must be a positive integer, got {members!r}")
    fitted = [fit_predictor(space, encodings, targets, seed=seed + 1000 * m, config=config, init=init)
              for m in range(members)]
    return fitted[0] if members == 1 else Ensemble(fitted)


def _train(network: nn.Module, x: torch.Tensor, z: torch.Tensor, config: FitConfig) -> None:
    # foreach: one multi-tensor update per step, bitwise equal to the per-tensor loop torch uses
    # on CPU by default and about a fifth faster for the 2M-parameter MLP
    opt = torch.optim.SGD(
        network.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, foreach=True
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    loss_fn = nn.HuberLoss(delta=config.huber_delta)
    network.train()
    n = len(x)
    for _ in range(config.epochs):
        order = torch.randperm(n)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            opt.zero_grad()
            loss_fn(network(x[idx]), z[idx]).backward()
            opt.step()
        sched.step()
    network.eval()


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b between two score vectors."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), k=1)
    da, db = da[iu], db[iu]
    denom = np.sqrt(np.count_nonzero(da) * np.count_nonzero(db))
    return float((da * db).sum() / denom) if denom else 0.0


def config_dict(config: FitConfig) -> dict[str, Any]:
    """The recipe as a plain dict (for tracking)."""
    return asdict(config)
