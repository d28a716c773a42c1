"""GCN predictor for topology spaces (paper Eq. 5 and Table I, after Wen et al. 2020).

Each layer mixes forward and backward messages over the operation graph:
``V' = 1/2 act(J V W1) + 1/2 act(J^T V W2)``; three layers of 144, mean over nodes, then
two fully connected layers (144 -> 128 -> 1), GeLU and dropout 0.05 throughout.

Deviations: ``J`` is the adjacency with self-loops, row-normalised (as in Wen et al.'s
code) so that a node keeps its own operation; Table I's GeLU replaces Eq. 5's ReLU; the
linear layers use Kaiming initialisation for the activation, without which SGD at the
paper's learning rate barely trains (Kendall tau 0.1-0.2 at N = 30).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn


def normalised_adjacency(adj: np.ndarray) -> torch.Tensor:
    """Row-normalised ``adj + I``."""
    a = torch.as_tensor(adj, dtype=torch.float32) + torch.eye(adj.shape[0])
    return a / a.sum(dim=1, keepdim=True)


class GraphLayer(nn.Module):
    """One bidirectional graph convolution (Eq. 5)."""

    def __init__(self, d_in: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.weights = nn.Linear(d_in, 2 * d_out, bias=False)  # W1 and W2 side by side
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, v: torch.Tensor, fwd: torch.Tensor, bwd: torch.Tensor) -> torch.Tensor:
        w1, w2 = self.weights(v).chunk(2, dim=-1)
        out = 0.5 * self.act(fwd @ w1) + 0.5 * self.act(bwd @ w2)
        return self.drop(out)


class GCNPredictor(nn.Module):
    """Scores a batch of operation matrices ``(B, nodes, options)`` over a fixed adjacency."""

    def __init__(
        self,
        adjacency: np.ndarray,
        num_options: int,
        hidden: int = 144,
        layers: int = 3,
        fc: int = 128,
        dropout: float = 0.05,
    ) -> None:
        super().__init__()
        self.register_buffer("fwd", normalised_adjacency(adjacency.T))
        self.register_buffer("bwd", normalised_adjacency(adjacency))
        dims = [num_options] + [hidden] * layers
        self.layers = nn.ModuleList(GraphLayer(a, b, dropout) for a, b in itertools.pairwise(dims))
        self.head = nn.Sequential(nn.Linear(hidden, fc), nn.GELU(), nn.Dropout(dropout), nn.Linear(fc, 1))
        init_linear(self)

    def forward(self, ops: torch.Tensor) -> torch.Tensor:
        v = ops
        for layer in self.layers:
            v = layer(v, self.fwd, self.bwd)
        return self.head(v.mean(dim=1)).squeeze(-1)


def init_linear(module: nn.Module) -> None:
    """Kaiming-normal weights and zero biases for every linear layer."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
