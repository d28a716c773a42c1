"""YOLOX's training loss: SimOTA label assignment, IoU loss for boxes, BCE for objectness and classes.

Follows Ge et al. 2021 (YOLOX, Sec. 2.1 "SimOTA") and its reference head
(``yolox/models/yolo_head.py``): raw outputs per level ``(dx, dy, log w, log h, obj, cls...)``
decode to boxes ``((g + d) * s, exp(l) * s)`` for grid cell ``g`` and stride ``s``. For each
ground-truth box the candidate anchors are those whose cell centre lies inside the box or
within ``center_radius`` strides of its centre; the cost of a (box, anchor) pair is
``BCE(sqrt(sigmoid(cls) * sigmoid(obj)), onehot) + 3 * -log(IoU) + 1e5 * [not in box and centre]``;
each box takes its ``dynamic k`` cheapest anchors, where k is the sum of its ten best IoUs
(at least one), and an anchor claimed by two boxes goes to the cheaper one. Positives
learn the box (IoU loss, weight 5), objectness 1 and the class with target IoU; every
anchor learns objectness; an L1 loss on the raw box outputs is added when ``use_l1``.
Losses are summed and divided by the number of positives, as in YOLOX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prednas.errors import PredNASError

REG_WEIGHT = 5.0
IOU_LOSSES = ("iou", "giou")


@dataclass(frozen=True)
class Anchors:
    """Grid cells of all levels, flattened in level order: cell ``(x, y)`` and stride each."""

    grid: torch.Tensor  # (A, 2)
    stride: torch.Tensor  # (A,)


def flatten_levels(outputs: Sequence, num_classes: int,
                   strides: Sequence[int] = (8, 16, 32)) -> tuple[torch.Tensor, Anchors]:
    """Raw per-level maps -> ``(B, A, 5 + C)`` raw outputs and their anchors.

    Each level is a ``(B, 5 + C, H, W)`` tensor or a ``(reg, obj, cls)`` triple of
    ``(B, 4, H, W)``, ``(B, 1, H, W)`` and ``(B, C, H, W)`` maps.
    """
    if len(outputs) != len(strides):
        raise PredNASError(f"detector returned {len(outputs)} levels; expected {len(strides)} (strides {strides})")
    flat, grids, steps = [], [], []
    for level, stride in zip(outputs, strides, strict=True):
        x = torch.cat(list(level), dim=1) if isinstance(level, list | tuple) else level
        if x.ndim != 4 or x.shape[1] != 5 + num_classes:
            raise PredNASError(f"detector level output has shape {tuple(x.shape)}; "
                               f"expected (B, {5 + num_classes}, H, W)")
        b, c, h, w = x.shape
        flat.append(x.permute(0, 2, 3, 1).reshape(b, h * w, c))
        ys, xs = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
        grids.append(torch.stack([xs, ys], dim=-1).reshape(-1, 2))
        steps.append(torch.full((h * w,), float(stride), device=x.device))
    return torch.cat(flat, dim=1), Anchors(torch.cat(grids).float(), torch.cat(steps))


def decode_boxes(raw: torch.Tensor, anchors: Anchors) -> torch.Tensor:
    """Raw ``(..., A, 4)`` box outputs -> ``(..., A, 4)`` boxes as ``x1, y1, x2, y2`` pixels."""
    centre = (raw[..., :2] + anchors.grid) * anchors.stride[:, None]
    size = torch.exp(raw[..., 2:4].clamp(max=20.0)) * anchors.stride[:, None]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def aligned_iou(a: torch.Tensor, b: torch.Tensor, kind: str = "iou") -> torch.Tensor:
    """IoU (or GIoU) of matching rows of two ``(N, 4)`` xyxy box sets."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    iou = inter / (union + 1e-16)
    if kind == "iou":
        return iou
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    return iou - (hull - union) / hull.clamp(min=1e-16)


def iou_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "iou") -> torch.Tensor:
    """YOLOX's box loss per row: ``1 - IoU^2`` (``iou``) or ``1 - GIoU`` (``giou``)."""
    if kind == "iou":
        return 1.0 - aligned_iou(pred, target) ** 2
    return 1.0 - aligned_iou(pred, target, "giou")


def candidate_anchors(gt: torch.Tensor, anchors: Anchors, center_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors near any box (``(A,)`` mask) and, for those, which boxes they sit in and near (``(G, A')``)."""
    centres = (anchors.grid + 0.5) * anchors.stride[:, None]  # (A, 2)
    cx, cy = centres[:, 0][None], centres[:, 1][None]
    in_box = (cx > gt[:, 0:1]) & (cx < gt[:, 2:3]) & (cy > gt[:, 1:2]) & (cy < gt[:, 3:4])
    gcx, gcy = (gt[:, 0:1] + gt[:, 2:3]) / 2, (gt[:, 1:2] + gt[:, 3:4]) / 2
    r = center_radius * anchors.stride[None]
    in_centre = ((cx - gcx).abs() < r) & ((cy - gcy).abs() < r)
    mask = (in_box | in_centre).any(dim=0)
    return mask, (in_box & in_centre)[:, mask]


def dynamic_k_match(cost: torch.Tensor, ious: torch.Tensor, topk: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """SimOTA matching on ``(G, A')`` cost and IoU: returns the positive mask ``(A',)`` and their box index."""
    k = min(topk, ious.shape[1])
    dynamic_ks = ious.topk(k, dim=1).values.sum(dim=1).int().clamp(min=1).tolist()
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g, dk in enumerate(dynamic_ks):
        matching[g, cost[g].topk(min(dk, cost.shape[1]), largest=False).indices] = True
    shared = matching.sum(dim=0) > 1
    if shared.any():
        best = cost[:, shared].argmin(dim=0)
        matching[:, shared] = False
        matching[best, shared.nonzero().squeeze(1)] = True
    positive = matching.any(dim=0)
    return positive, matching[:, positive].float().argmax(dim=0)


@torch.no_grad()
def simota_assign(boxes: torch.Tensor, obj: torch.Tensor, cls: torch.Tensor, gt: torch.Tensor,
                  gt_labels: torch.Tensor, anchors: Anchors, center_radius: float = 2.5
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's assignment: positive mask ``(A,)``, matched box index and IoU per positive."""
    import torchvision

    mask, in_both = candidate_anchors(gt, anchors, center_radius)
    ious = torchvision.ops.box_iou(gt, boxes[mask].float())  # (G, A')
    scores = (cls[mask].float().sigmoid() * obj[mask, None].float().sigmoid()).sqrt()  # (A', C)
    onehot = F.one_hot(gt_labels, cls.shape[-1]).float()  # (G, C)
    with torch.autocast(device_type=boxes.device.type, enabled=False):
        s = scores[None].expand(len(gt), -1, -1)
        cls_cost = F.binary_cross_entropy(s, onehot[:, None].expand_as(s), reduction="none").sum(-1)
    cost = cls_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * (~in_both).float()
    positive, matched = dynamic_k_match(cost, ious)
    fg = mask.clone()
    fg[mask] = positive
    return fg, matched, ious[matched, positive.nonzero().squeeze(1)]


def yolox_loss(outputs: Sequence, targets: Sequence[torch.Tensor], num_classes: int,
               strides: Sequence[int] = (8, 16, 32), *, iou_type: str = "iou", use_l1: bool = False,
               center_radius: float = 2.5) -> dict[str, torch.Tensor]:
    """Total and component losses for a batch; ``targets[i]`` is ``(n, 5)`` of ``label, x1, y1, x2, y2``."""
    if iou_type not in IOU_LOSSES:
        raise PredNASError(f"unknown IoU loss {iou_type!r}; expected one of: {', '.join(IOU_LOSSES)}")
    raw, anchors = flatten_levels(outputs, num_classes, strides)
    raw = raw.float()
    boxes = decode_boxes(raw[..., :4], anchors)
    obj_target = torch.zeros(raw.shape[:2], device=raw.device)
    fg_boxes, fg_targets, fg_cls, fg_cls_target, fg_l1, fg_l1_target = [], [], [], [], [], []
    num_gt = 0
    for i, target in enumerate(targets):
        target = target.to(raw.device)
        if len(target) == 0:
            continue
        num_gt += len(target)
        labels, gt = target[:, 0].long(), target[:, 1:5].float()
        fg, matched, ious = simota_assign(boxes[i].detach(), raw[i, :, 4], raw[i, :, 5:], gt, labels, anchors,
                                          center_radius)
        obj_target[i, fg] = 1.0
        fg_boxes.append(boxes[i, fg])
        fg_targets.append(gt[matched])
        fg_cls.append(raw[i, fg, 5:])
        fg_cls_target.append(F.one_hot(labels[matched], num_classes).float() * ious[:, None])
        if use_l1:
            fg_l1.append(raw[i, fg, :4])
            fg_l1_target.append(_l1_target(gt[matched], anchors.grid[fg], anchors.stride[fg]))
    num_fg = max(sum(len(b) for b in fg_boxes), 1)
    zero = raw.sum() * 0.0
    loss_obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, reduction="sum") / num_fg
    loss_iou = iou_loss(torch.cat(fg_boxes), torch.cat(fg_targets), iou_type).sum() / num_fg if fg_boxes else zero
    loss_cls = (F.binary_cross_entropy_with_logits(torch.cat(fg_cls), torch.cat(fg_cls_target), reduction="sum")
                / num_fg) if fg_boxes else zero
    loss_l1 = (F.l1_loss(torch.cat(fg_l1), torch.cat(fg_l1_target), reduction="sum") / num_fg) if fg_l1 else zero
    total = REG_WEIGHT * loss_iou + loss_obj + loss_cls + loss_l1
    return {"loss": total, "iou": loss_iou.detach(), "obj": loss_obj.detach(), "cls": loss_cls.detach(),
            "l1": loss_l1.detach(), "fg_per_gt": torch.tensor(num_fg / max(num_gt, 1))}


def _l1_target(gt: torch.Tensor, grid: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    centre = (gt[:, :2] + gt[:, 2:]) / 2
    size = (gt[:, 2:] - gt[:, :2]).clamp(min=1e-3)
    return torch.cat([centre / stride[:, None] - grid, torch.log(size / stride[:, None] + 1e-8)], dim=1)
