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

Deviation in form, not in result: YOLOX assigns image by image in a Python loop and
gathers the positives with boolean masks, which makes the host wait for the device at
every image. Here the targets are padded to ``(B, G, 5)`` and the whole batch is assigned
at once on the device (costs as ``(B, G, A)`` tensors, dynamic k as a top-10 with a rank
mask), and the losses are masked sums over all anchors, so a training step never waits.
The matches are YOLOX's; the losses agree with the per-image form to float rounding.
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


def pad_targets(targets: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Per-image ``(n, 5)`` targets -> one ``(B, G, 5)`` tensor, at least one row, label -1 on padding rows."""
    if isinstance(targets, torch.Tensor):
        return targets
    rows = max([len(t) for t in targets] + [1])
    out = torch.zeros(len(targets), rows, 5)
    out[..., 0] = -1.0
    for i, target in enumerate(targets):
        out[i, : len(target)] = target
    return out


def pairwise_iou(gt: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of every ``(B, G, 4)`` box with every ``(B, A, 4)`` box of the same image: ``(B, G, A)``."""
    lt = torch.maximum(gt[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(gt[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_gt = (gt[..., 2:] - gt[..., :2]).prod(dim=-1)
    area = (boxes[..., 2:] - boxes[..., :2]).prod(dim=-1)
    return inter / (area_gt[:, :, None] + area[:, None, :] - inter)


def candidate_anchors(gt: torch.Tensor, valid: torch.Tensor, anchors: Anchors,
                      center_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors near any box of their image ``(B, A)``, and which boxes they sit in and near ``(B, G, A)``."""
    centres = (anchors.grid + 0.5) * anchors.stride[:, None]  # (A, 2)
    cx, cy = centres[:, 0], centres[:, 1]
    x1, y1, x2, y2 = (v[..., None] for v in gt.unbind(-1))  # (B, G, 1) each
    in_box = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2) & valid[..., None]
    r = center_radius * anchors.stride
    in_centre = ((cx - (x1 + x2) / 2).abs() < r) & ((cy - (y1 + y2) / 2).abs() < r) & valid[..., None]
    return (in_box | in_centre).any(dim=1), in_box & in_centre


def dynamic_k_match(cost: torch.Tensor, ious: torch.Tensor, valid: torch.Tensor | None = None,
                    topk: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """SimOTA matching on ``(..., G, A)`` cost and IoU: positive mask ``(..., A)`` and box index per anchor.

    ``ious`` is zero for anchors that are no candidate; ``valid`` ``(..., G)`` marks real boxes
    (padding rows match nothing). The box index of an anchor that is not positive is 0.
    """
    k = min(topk, ious.shape[-1])
    dynamic_ks = ious.topk(k, dim=-1).values.sum(dim=-1).int().clamp(min=1)  # (..., G)
    take = torch.arange(k, device=cost.device) < dynamic_ks[..., None]
    if valid is not None:
        take &= valid[..., None]
    cheapest = cost.topk(k, dim=-1, largest=False).indices
    matching = torch.zeros_like(cost, dtype=torch.bool).scatter_(-1, cheapest, take)
    shared = matching.sum(dim=-2, keepdim=True) > 1  # an anchor claimed by two boxes goes to the cheaper one
    cheaper = F.one_hot(cost.argmin(dim=-2), cost.shape[-2]).movedim(-1, -2).bool()
    matching = torch.where(shared, cheaper, matching)
    return matching.any(dim=-2), matching.to(torch.uint8).argmax(dim=-2)


def class_cost(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``sum_c BCE(p_c, onehot(y)_c)`` for ``(B, A, C)`` scores and ``(B, G)`` labels: ``(B, G, A)``.

    Computed as ``sum_c -log(1 - p_c)`` plus ``log(1 - p_y) - log(p_y)`` for the box's class
    ``y`` (logs clamped at -100 as ``binary_cross_entropy`` does), in ``(B, A, C)`` memory
    instead of the ``(B, G, A, C)`` of the one-hot form.
    """
    log_p, log_q = torch.log(scores).clamp(min=-100), torch.log(1 - scores).clamp(min=-100)
    index = labels.clamp(min=0)[..., None].expand(-1, -1, scores.shape[1])  # (B, G, A)
    own_p, own_q = log_p.transpose(1, 2).gather(1, index), log_q.transpose(1, 2).gather(1, index)
    return -log_q.sum(dim=-1)[:, None, :] - own_p + own_q


@torch.no_grad()
def simota_assign(boxes: torch.Tensor, obj: torch.Tensor, cls: torch.Tensor, gt: torch.Tensor,
                  gt_labels: torch.Tensor, valid: torch.Tensor, anchors: Anchors, center_radius: float = 2.5
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A whole batch's assignment at once: positive mask ``(B, A)``, matched box and its IoU per anchor.

    ``boxes`` ``(B, A, 4)``, ``obj`` ``(B, A)``, ``cls`` ``(B, A, C)`` are the decoded predictions,
    ``gt`` ``(B, G, 4)`` and ``gt_labels`` ``(B, G)`` the padded targets, ``valid`` ``(B, G)`` their
    real rows.
    """
    candidate, in_both = candidate_anchors(gt, valid, anchors, center_radius)
    usable = candidate[:, None, :] & valid[..., None]
    ious = torch.where(usable, pairwise_iou(gt, boxes.float()), 0.0)
    scores = (cls.float().sigmoid() * obj[..., None].float().sigmoid()).sqrt()
    cost = class_cost(scores, gt_labels) + 3.0 * -torch.log(ious + 1e-8) + 1e5 * (~in_both).float()
    cost = cost + 1e9 * (~usable).float()  # never an anchor that is no candidate, nor a padding row
    positive, matched = dynamic_k_match(cost, ious, valid)
    return positive, matched, ious.gather(1, matched[:, None, :]).squeeze(1)


def yolox_loss(outputs: Sequence, targets: Sequence[torch.Tensor] | torch.Tensor, num_classes: int,
               strides: Sequence[int] = (8, 16, 32), *, iou_type: str = "iou", use_l1: bool = False,
               center_radius: float = 2.5) -> dict[str, torch.Tensor]:
    """Total and component losses for a batch, without waiting for the device.

    ``targets[i]`` is ``(n, 5)`` of ``label, x1, y1, x2, y2``, or all of them padded into
    ``(B, G, 5)`` with label -1 (``pad_targets``). Every loss is a masked sum over all
    anchors, so no step reads a count back to the host.
    """
    if iou_type not in IOU_LOSSES:
        raise PredNASError(f"unknown IoU loss {iou_type!r}; expected one of: {', '.join(IOU_LOSSES)}")
    raw, anchors = flatten_levels(outputs, num_classes, strides)
    raw = raw.float()
    boxes = decode_boxes(raw[..., :4], anchors)
    padded = pad_targets(targets).to(raw.device, non_blocking=True).float()
    labels, gt = padded[..., 0].long(), padded[..., 1:5]
    valid = labels >= 0
    fg, matched, ious = simota_assign(boxes.detach(), raw[..., 4], raw[..., 5:], gt, labels, valid, anchors,
                                      center_radius)
    num_fg = fg.sum().clamp(min=1).float()
    target_boxes = gt.gather(1, matched[..., None].expand(-1, -1, 4))  # (B, A, 4)
    loss_obj = F.binary_cross_entropy_with_logits(raw[..., 4], fg.float(), reduction="sum") / num_fg
    box_loss = iou_loss(boxes.reshape(-1, 4), target_boxes.reshape(-1, 4), iou_type).view(fg.shape)
    loss_iou = torch.where(fg, box_loss, 0.0).sum() / num_fg
    cls_target = F.one_hot(labels.gather(1, matched).clamp(min=0), num_classes).float() * ious[..., None]
    cls_loss = F.binary_cross_entropy_with_logits(raw[..., 5:], cls_target, reduction="none").sum(dim=-1)
    loss_cls = torch.where(fg, cls_loss, 0.0).sum() / num_fg
    if use_l1:
        l1 = (raw[..., :4] - _l1_target(target_boxes, anchors.grid, anchors.stride)).abs().sum(dim=-1)
        loss_l1 = torch.where(fg, l1, 0.0).sum() / num_fg
    else:
        loss_l1 = raw.sum() * 0.0
    total = REG_WEIGHT * loss_iou + loss_obj + loss_cls + loss_l1
    return {"loss": total, "iou": loss_iou.detach(), "obj": loss_obj.detach(), "cls": loss_cls.detach(),
            "l1": loss_l1.detach(), "fg_per_gt": fg.sum() / valid.sum().clamp(min=1)}


def _l1_target(gt: torch.Tensor, grid: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    centre = (gt[..., :2] + gt[..., 2:]) / 2
    size = (gt[..., 2:] - gt[..., :2]).clamp(min=1e-3)
    return torch.cat([centre / stride[:, None] - grid, torch.log(size / stride[:, None] + 1e-8)], dim=-1)
