"""YOLOX-space detector (paper Sec. IV-C, Table V; Ge et al. 2021, Megvii's YOLOX).

Layer for layer YOLOX's ``YOLOPAFPN`` + ``YOLOXHead`` (non-depthwise, SiLU, BN eps 1e-3
and momentum 0.03), with every depth, width and expand ratio an argument:

- backbone (CSPDarknet): ``Focus`` stem (space-to-depth, 3x3 conv to ``stem`` channels);
  4 stages ("dark2".."dark5"), each a 3x3 stride-2 conv to the stage width and a CSP
  layer of ``depth`` bottlenecks with hidden width ``int(width x ratio)``; the last stage
  has SPP (max-pools 5, 9, 13) before its CSP layer, and no shortcuts in it;
- neck (PAFPN), 4 CSP stages in YOLOX's order ``C3_p4, C3_p3, C3_n3, C3_n4`` with widths
  ``N1..N4``: lateral 1x1 conv dark5 -> N1, top-down ``C3_p4(N1 + dark4) -> N1``, 1x1 conv
  N1 -> N2, ``C3_p3(N2 + dark3) -> N2`` (stride 8 out), 3x3 s2 conv N2 -> N2,
  ``C3_n3(N2 + N2) -> N3`` (stride 16 out), 3x3 s2 conv N3 -> N3, ``C3_n4(N3 + N1) -> N4``
  (stride 32 out). With YOLOX's widths this is exactly ``YOLOPAFPN``;
- one decoupled head per level: shared 1x1 convs (YOLOX's ``stem``), then a cls branch and
  a reg branch of 3x3 convs, then 1x1 predictors: cls
  (``num_classes``) from the cls branch, reg (4) and obj (1) from the reg branch, with
  biases (cls and obj initialised to the prior 0.01 as in YOLOX).

Deviation: YOLOX's head has exactly one shared conv, 1x1; the searched heads of paper
Table VII have up to 3, whose kernel size the paper does not give. Ours are all 1x1 (the
stem repeated), which comes closer to the printed cost of PredNAS-S than 3x3 does (see
``prednas.spaces.yolox``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

STRIDES: tuple[int, int, int] = (8, 16, 32)


class BaseConv(nn.Sequential):
    """Conv (no bias), BN, SiLU; padding keeps ``size / stride``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03), nn.SiLU(inplace=True))


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv at one width, with an identity shortcut when ``shortcut``."""

    def __init__(self, width: int, shortcut: bool) -> None:
        super().__init__()
        self.conv1 = BaseConv(width, width, 1)
        self.conv2 = BaseConv(width, width, 3)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class CSPLayer(nn.Module):
    """Cross-stage partial layer: two 1x1 branches to ``int(c_out x ratio)``, bottlenecks on one, 1x1 merge."""

    def __init__(self, c_in: int, c_out: int, depth: int, ratio: float, shortcut: bool) -> None:
        super().__init__()
        hidden = int(c_out * ratio)
        self.conv1 = BaseConv(c_in, hidden, 1)
        self.conv2 = BaseConv(c_in, hidden, 1)
        self.conv3 = BaseConv(2 * hidden, c_out, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat([self.m(self.conv1(x)), self.conv2(x)], dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling (YOLOX's ``SPPBottleneck``): 1x1 to half width, max-pools 5/9/13, 1x1."""

    def __init__(self, width: int, kernels: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = width // 2
        self.conv1 = BaseConv(width, hidden, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernels)
        self.conv2 = BaseConv(hidden * (len(kernels) + 1), width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.pools)], dim=1))


class Focus(nn.Module):
    """Space-to-depth (2x2 pixels to 12 channels), then a 3x3 conv."""

    def __init__(self, c_out: int) -> None:
        super().__init__()
        self.conv = BaseConv(12, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], dim=1)
        return self.conv(x)


class CSPDarknet(nn.Module):
    """Focus stem and 4 stride-2 stages; returns the dark3, dark4, dark5 features (strides 8, 16, 32)."""

    def __init__(self, stem: int, depths: Sequence[int], widths: Sequence[int], ratios: Sequence[float]) -> None:
        super().__init__()
        self.stem = Focus(stem)
        stages: list[nn.Module] = []
        c_in = stem
        for i, (d, w, r) in enumerate(zip(depths, widths, ratios, strict=True)):
            last = i == len(widths) - 1
            layers = [BaseConv(c_in, w, 3, 2), *([SPP(w)] if last else []), CSPLayer(w, w, d, r, shortcut=not last)]
            stages.append(nn.Sequential(*layers))
            c_in = w
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[1:]


class PAFPN(nn.Module):
    """YOLOX's path-aggregation neck with independent stage widths ``N1..N4`` (see module docstring)."""

    def __init__(self, in_widths: Sequence[int], depths: Sequence[int], widths: Sequence[int],
                 ratios: Sequence[float]) -> None:
        super().__init__()
        b3, b4, b5 = in_widths
        (d1, d2, d3, d4), (n1, n2, n3, n4), (r1, r2, r3, r4) = depths, widths, ratios
        self.lateral_conv0 = BaseConv(b5, n1, 1)
        self.C3_p4 = CSPLayer(n1 + b4, n1, d1, r1, shortcut=False)
        self.reduce_conv1 = BaseConv(n1, n2, 1)
        self.C3_p3 = CSPLayer(n2 + b3, n2, d2, r2, shortcut=False)
        self.bu_conv2 = BaseConv(n2, n2, 3, 2)
        self.C3_n3 = CSPLayer(n2 + n2, n3, d3, r3, shortcut=False)
        self.bu_conv1 = BaseConv(n3, n3, 3, 2)
        self.C3_n4 = CSPLayer(n3 + n1, n4, d4, r4, shortcut=False)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x3, x4, x5 = features
        fpn_out0 = self.lateral_conv0(x5)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x4], dim=1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x3], dim=1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], dim=1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], dim=1))
        return [pan_out2, pan_out1, pan_out0]


def _chain(c_in: int, widths: Sequence[int], kernel: int = 3) -> nn.Sequential:
    layers = []
    for w in widths:
        layers.append(BaseConv(c_in, w, kernel))
        c_in = w
    return nn.Sequential(*layers)


class DecoupledHead(nn.Module):
    """One level's head: shared convs, then cls and reg branches; raw ``(B, 4 + 1 + C, H, W)`` output."""

    def __init__(self, c_in: int, shared: Sequence[int], cls: Sequence[int], reg: Sequence[int],
                 num_classes: int, prior: float = 0.01) -> None:
        super().__init__()
        self.shared = _chain(c_in, shared, kernel=1)
        self.cls_convs = _chain(shared[-1], cls)
        self.reg_convs = _chain(shared[-1], reg)
        self.cls_pred = nn.Conv2d(cls[-1], num_classes, 1)
        self.reg_pred = nn.Conv2d(reg[-1], 4, 1)
        self.obj_pred = nn.Conv2d(reg[-1], 1, 1)
        bias = -math.log((1 - prior) / prior)
        for pred in (self.cls_pred, self.obj_pred):
            nn.init.constant_(pred.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shared(x)
        reg = self.reg_convs(x)
        return torch.cat([self.reg_pred(reg), self.obj_pred(reg), self.cls_pred(self.cls_convs(x))], dim=1)


def decode_outputs(outputs: Sequence[torch.Tensor], strides: Sequence[int] = STRIDES) -> torch.Tensor:
    """Raw per-level maps to ``(B, N, 4 + 1 + C)``: boxes as cx, cy, w, h in input pixels, then sigmoid scores.

    As YOLOX: ``cxcy = (raw_xy + cell) x stride`` and ``wh = exp(raw_wh) x stride``; the
    objectness and class columns pass through a sigmoid. ``N`` runs over levels in order,
    each level row-major over its ``H x W`` cells.
    """
    decoded = []
    for out, stride in zip(outputs, strides, strict=True):
        b, c, h, w = out.shape
        out = out.permute(0, 2, 3, 1).reshape(b, h * w, c)
        ys, xs = torch.meshgrid(torch.arange(h, device=out.device), torch.arange(w, device=out.device), indexing="ij")
        grid = torch.stack([xs, ys], dim=-1).reshape(1, h * w, 2).to(out.dtype)
        xy = (out[..., :2] + grid) * stride
        wh = torch.exp(out[..., 2:4]) * stride
        decoded.append(torch.cat([xy, wh, torch.sigmoid(out[..., 4:])], dim=-1))
    return torch.cat(decoded, dim=1)


def postprocess(decoded: torch.Tensor, score_threshold: float = 0.01, nms_threshold: float = 0.65,
                max_detections: int = 100) -> list[dict[str, torch.Tensor]]:
    """Per image: score = obj x best class probability, threshold, class-wise NMS (torchvision), top detections.

    Returns one dict per image with ``boxes`` ``(n, 4)`` (x1, y1, x2, y2, input pixels),
    ``scores`` ``(n,)`` and ``labels`` ``(n,)`` (int64 class indices), best score first.
    """
    from torchvision.ops import batched_nms, box_convert

    results = []
    for pred in decoded:
        cls_conf, labels = pred[:, 5:].max(dim=1)
        scores = pred[:, 4] * cls_conf
        keep = scores >= score_threshold
        boxes = box_convert(pred[keep, :4], in_fmt="cxcywh", out_fmt="xyxy")
        scores, labels = scores[keep], labels[keep]
        kept = batched_nms(boxes, scores, labels, nms_threshold)[:max_detections]
        results.append({"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]})
    return results


class YOLOXDetector(nn.Module):
    """CSPDarknet backbone, PAFPN neck and three decoupled anchor-free heads (strides 8, 16, 32).

    ``forward(images)`` takes ``(B, 3, H, W)`` images, ``H`` and ``W`` multiples of 32.

    - Training mode: a list of 3 raw tensors, one per level with stride 8, 16 and 32, each
      ``(B, 4 + 1 + num_classes, H / stride, W / stride)``; channels ``0:4`` are the box
      regression (x, y offsets from the cell's top-left corner and log w, h, all in units
      of the stride), ``4`` the objectness logit, ``5:`` the class logits (YOLOX's layout;
      ``decode_outputs`` turns them into pixels and probabilities).
    - Eval mode: one dict per image with ``boxes`` (x1, y1, x2, y2 pixels), ``scores`` and
      ``labels``, after ``score_threshold`` and class-wise NMS at ``nms_threshold``.
    """

    strides = STRIDES

    def __init__(self, stem: int, backbone: tuple[Sequence[int], Sequence[int], Sequence[float]],
                 neck: tuple[Sequence[int], Sequence[int], Sequence[float]],
                 heads: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]], num_classes: int = 80,
                 score_threshold: float = 0.01, nms_threshold: float = 0.65, max_detections: int = 100) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.score_threshold, self.nms_threshold, self.max_detections = score_threshold, nms_threshold, max_detections
        self.backbone = CSPDarknet(stem, *backbone)
        self.neck = PAFPN(backbone[1][1:], *neck)
        levels = (neck[1][1], neck[1][2], neck[1][3])
        self.heads = nn.ModuleList(DecoupledHead(c, *head, num_classes=num_classes)
                                   for c, head in zip(levels, heads, strict=True))

    def raw(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The training-mode output, whatever the mode."""
        features = self.neck(self.backbone(images))
        return [head(f) for head, f in zip(self.heads, features, strict=True)]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor] | list[dict[str, torch.Tensor]]:
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            from prednas.errors import PredNASError

            raise PredNASError(f"YOLOX input size {h}x{w}: expected height and width that are multiples of 32")
        outputs = self.raw(images)
        if self.training:
            return outputs
        return postprocess(decode_outputs(outputs, self.strides), self.score_threshold, self.nms_threshold,
                           self.max_detections)
