"""AnyNetX network (Radosavovic et al. 2020, "Designing Network Design Spaces", Sec. 3.1).

Follows pycls' ``AnyNet`` with X blocks and torchvision's ``RegNet`` layer for layer, so a
RegNetX configuration builds a network with exactly torchvision's parameters:

- stem: 3x3 conv stride 2 to ``stem_width`` channels, BN, ReLU;
- 4 stages; the first block of each has stride 2 and a projection shortcut (1x1 conv with
  that stride, BN) when its width or resolution changes;
- X block: 1x1 conv to the bottleneck width ``w_b = width x ratio``, BN, ReLU; 3x3 conv
  with ``groups`` groups (stride on the 3x3, as in pycls), BN, ReLU; 1x1 conv to ``width``,
  BN; added to the shortcut, then ReLU;
- head: global average pool, fully connected layer with bias.

Convolutions have no bias (BN follows each). Weight initialisation follows pycls:
He-normal convs, BN gamma 1 (0 for the last BN of each block is pycls' option and off
here, as in torchvision), classifier N(0, 0.01).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn(w_in: int, w_out: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Convolution without bias, BN and (optionally) ReLU; padding keeps ``size / stride``."""
    layers: list[nn.Module] = [
        nn.Conv2d(w_in, w_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(w_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class XBlock(nn.Module):
    """Residual bottleneck block with a grouped 3x3 convolution (AnyNetX's X block)."""

    def __init__(self, w_in: int, w_out: int, stride: int, bottleneck: int, groups: int) -> None:
        super().__init__()
        self.f = nn.Sequential(
            conv_bn(w_in, bottleneck, 1),
            conv_bn(bottleneck, bottleneck, 3, stride=stride, groups=groups),
            conv_bn(bottleneck, w_out, 1, relu=False),
        )
        self.proj = conv_bn(w_in, w_out, 1, stride=stride, relu=False) if (w_in != w_out or stride != 1) else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return self.relu(shortcut + self.f(x))


class AnyNetX(nn.Module):
    """Stem, 4 stages of X blocks, average pool and classifier."""

    def __init__(self, depths: Sequence[int], widths: Sequence[int], bottlenecks: Sequence[int],
                 groups: Sequence[int], num_classes: int = 1000, stem_width: int = 32) -> None:
        super().__init__()
        self.stem = conv_bn(3, stem_width, 3, stride=2)
        stages: list[nn.Module] = []
        w_in = stem_width
        for depth, width, w_b, g in zip(depths, widths, bottlenecks, groups, strict=True):
            blocks = [XBlock(w_in if i == 0 else width, width, 2 if i == 0 else 1, w_b, g) for i in range(depth)]
            stages.append(nn.Sequential(*blocks))
            w_in = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w_in, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))
