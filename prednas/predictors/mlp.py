"""MLP predictor for size spaces (paper Table I): 3 layers of 1000, GeLU, dropout 0.05, one FC."""

from __future__ import annotations

import torch
from torch import nn

from prednas.predictors.gcn import init_linear


class MLPPredictor(nn.Module):
    """Scores a batch of flat encodings ``(B, features)``."""

    def __init__(self, in_features: int, hidden: int = 1000, layers: int = 3, dropout: float = 0.05) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)
        init_linear(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(-1)
