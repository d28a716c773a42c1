"""Detection training: COCO validation, transforms, SimOTA, the loop, COCOeval and resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prednas.errors import PredNASError
from prednas.train.checkpoint import Checkpointer
from prednas.train.coco import (
    CocoSpec,
    DetectionDataset,
    hflip,
    letterbox,
    load_coco,
    load_coco_split,
    mosaic,
    read_coco_json,
)
from prednas.train.detection import DetectionRecipe, coco_metrics, train_detector
from prednas.train.runtime import build_seeded
from prednas.train.simota import (
    Anchors,
    aligned_iou,
    class_cost,
    decode_boxes,
    dynamic_k_match,
    flatten_levels,
    pad_targets,
    simota_assign,
    yolox_loss,
)

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"
needs_coco = pytest.mark.skipif(not COCO.exists(), reason="needs ../shared/data/coco_mini")
TRAIN_JSON = COCO / "annotations" / "instances_train.json"
VAL_JSON = COCO / "annotations" / "instances_val.json"

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny networks gain nothing from more, and a busy CI machine loses a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def minimal_coco() -> dict:
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0}],
            "categories": [{"id": 3, "name": "x"}, {"id": 9, "name": "y"}]}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("images"), "isn't COCO: expected a list under 'images'"),
    (lambda d: d["annotations"][0].update(category_id=5), "annotation 7 has category_id 5, which is not among"),
    (lambda d: d["annotations"][0].update(bbox=[1, 1, -2, 3]), "annotation 7 has a box of negative size"),
    (lambda d: d["annotations"][0].update(bbox=[1, 1, 3]), "annotation 7 has bbox"),
    (lambda d: d["annotations"][0].update(image_id=2), "annotation 7 refers to image_id 2"),
    (lambda d: d["images"][0].pop("width"), "image #0 lacks"),
])
def test_bad_annotation_files_are_one_line_errors(tmp_path: Path, change, message: str) -> None:
    data = minimal_coco()
    change(data)
    with pytest.raises(PredNASError, match=message) as info:
        read_coco_json(write_json(tmp_path / "a.json", data))
    assert "\n" not in str(info.value)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{nope")
    with pytest.raises(PredNASError, match="is not JSON"):
        read_coco_json(tmp_path / "a.json")
    with pytest.raises(PredNASError, match="does not exist"):
        read_coco_json(tmp_path / "b.json")
    with pytest.raises(PredNASError, match="isn't COCO"):
        read_coco_json(write_json(tmp_path / "c.json", [1, 2]))


def test_categories_map_to_contiguous_labels_and_crowd_boxes_are_dropped(tmp_path: Path) -> None:
    data = minimal_coco()
    data["annotations"].append({"id": 8, "image_id": 1, "category_id": 9, "bbox": [2, 2, 4, 4], "iscrowd": 1})
    data["annotations"].append({"id": 9, "image_id": 1, "category_id": 9, "bbox": [2, 2, 30, 0], "iscrowd": 0})
    data["annotations"].append({"id": 10, "image_id": 1, "category_id": 9, "bbox": [15, 2, 30, 4], "iscrowd": 0})
    split = load_coco_split(write_json(tmp_path / "a.json", data), tmp_path)
    record = split.records[0]
    assert split.class_ids == (3, 9)
    assert record.labels.tolist() == [0, 1]  # crowd and zero-height boxes dropped
    assert record.boxes.tolist() == [[1, 1, 6, 6], [15, 2, 20, 6]]  # clipped to the image


@needs_coco
def test_coco_mini_splits() -> None:
    train, val = load_coco(CocoSpec(str(TRAIN_JSON), str(COCO / "images"), str(VAL_JSON)))
    assert len(train.records) == 102 and len(val.records) == 26 and train.num_classes == 80
    assert sum(len(r.boxes) == 0 for r in train.records) == 2  # images without boxes stay
    assert sum(len(r.boxes) for r in train.records) == 752 - 8  # crowd boxes dropped
    grey = next(r for r in val.records if r.path.endswith("000000000086.jpg"))
    from prednas.train.coco import read_image

    assert read_image(grey.path).shape[2] == 3
    subset, _ = load_coco(CocoSpec(str(TRAIN_JSON), str(COCO / "images"), str(VAL_JSON), fraction=0.1))
    assert len(subset.records) == 10


def test_letterbox_flip_and_mosaic_keep_boxes_on_their_objects() -> None:
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[10:20, 30:50] = 255
    boxes = np.array([[30, 10, 50, 20]], dtype=np.float32)
    canvas, moved, scale = letterbox(image, boxes, 64)
    assert canvas.shape == (64, 64, 3) and scale == pytest.approx(0.8)
    assert moved.tolist() == [[24, 8, 40, 16]] and (canvas[32:, :] == 114).all()
    flipped, fboxes = hflip(image, boxes)
    assert fboxes.tolist() == [[30, 10, 50, 20]] and (flipped[10:20, 30:50] == 255).all()
    out, mboxes, labels = mosaic([(image, boxes, np.array([3]))] * 4, 64, np.random.default_rng(0))
    assert out.shape == (64, 64, 3) and len(mboxes) == len(labels)
    for x1, y1, x2, y2 in mboxes.round().astype(int):
        assert out[y1 + 1:y2 - 1, x1 + 1:x2 - 1].mean() > 200  # each kept box still frames white pixels


@needs_coco
def test_dataset_samples_are_seeded() -> None:
    train = load_coco_split(TRAIN_JSON, COCO / "images", limit=4)
    dataset = DetectionDataset(train, 64)
    dataset.mosaic = True
    a, b = dataset[(1, 5)], dataset[(1, 5)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (3, 64, 64) and a[1].shape[1] == 5


def _anchors(h: int, stride: int) -> Anchors:
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    return Anchors(torch.stack([xs, ys], -1).reshape(-1, 2).float(), torch.full((h * h,), float(stride)))


def test_decode_and_iou() -> None:
    anchors = _anchors(2, 8)
    raw = torch.zeros(4, 4)
    boxes = decode_boxes(raw, anchors)
    assert boxes[3].tolist() == [4.0, 4.0, 12.0, 12.0]  # cell (1, 1): centre 8, size 8
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10]])
    assert aligned_iou(a, b).tolist() == pytest.approx([1.0, 1 / 3])
    assert aligned_iou(a, torch.tensor([[20.0, 0, 30, 10]] * 2), "giou").tolist() == pytest.approx([-1 / 3] * 2)


def test_dynamic_k_gives_a_shared_anchor_to_the_cheaper_box() -> None:
    cost = torch.tensor([[1.0, 2.0, 9.0], [5.0, 1.0, 2.0]])
    ious = torch.tensor([[0.9, 0.9, 0.5], [0.5, 0.9, 0.9]])  # dynamic k = 2 for both boxes
    positive, matched = dynamic_k_match(cost, ious)
    assert positive.tolist() == [True, True, True]
    assert matched.tolist() == [0, 1, 1]  # anchor 1 is claimed by both; box 1 pays less for it
    positive, matched = dynamic_k_match(cost, torch.tensor([[0.9, 0.9, 0.0], [0.0, 0.6, 0.6]]))  # k = 1
    assert positive.tolist() == [True, True, False] and matched[positive].tolist() == [0, 1]
    positive, _ = dynamic_k_match(cost, ious, valid=torch.tensor([True, False]))  # a padding row matches nothing
    assert positive.tolist() == [True, True, False]


def _random_batch(seed: int, c: int = 3, b: int = 4) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    levels = [torch.randn(b, 5 + c, s, s, generator=gen) for s in (8, 4, 2)]
    targets = []
    for i in range(b):
        n = i * 2  # 0, 2, 4, 6 boxes: padding and an image without boxes
        xy = torch.rand(n, 2, generator=gen) * 48
        wh = torch.rand(n, 2, generator=gen) * 30 + 2
        targets.append(torch.cat([torch.randint(0, c, (n, 1), generator=gen).float(), xy, xy + wh], 1))
    return levels, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_assignment_equals_image_by_image(seed: int) -> None:
    levels, targets = _random_batch(seed)
    raw, anchors = flatten_levels(levels, 3)
    boxes = decode_boxes(raw[..., :4], anchors)
    padded = pad_targets(targets)
    assert padded.shape == (4, 6, 5) and (padded[0, :, 0] == -1).all()
    fg, matched, ious = simota_assign(boxes, raw[..., 4], raw[..., 5:], padded[..., 1:], padded[..., 0].long(),
                                      padded[..., 0] >= 0, anchors)
    assert not fg[0].any()
    for i, target in enumerate(targets[1:], start=1):
        alone = pad_targets([target])
        one = simota_assign(boxes[i:i + 1], raw[i:i + 1, :, 4], raw[i:i + 1, :, 5:], alone[..., 1:],
                            alone[..., 0].long(), alone[..., 0] >= 0, anchors)
        assert fg[i].any() and torch.equal(one[0][0], fg[i])
        assert torch.equal(one[1][0][fg[i]], matched[i][fg[i]]) and torch.equal(one[2][0], ious[i])


def test_class_cost_is_the_binary_cross_entropy_of_yolox() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(2, 7, 4, generator=gen)
    scores[0, 0, 1] = 0.0  # log(0): clamped at -100 as binary_cross_entropy clamps it
    labels = torch.tensor([[1, 3, 0], [2, -1, -1]])
    cost = class_cost(scores, labels)
    for b in range(2):
        for g in range(3):
            onehot = torch.nn.functional.one_hot(labels[b, g].clamp(min=0), 4).float().expand(7, -1)
            expected = torch.nn.functional.binary_cross_entropy(scores[b], onehot, reduction="none").sum(-1)
            assert torch.allclose(cost[b, g], expected, rtol=1e-5)


def test_flatten_accepts_both_output_layouts() -> None:
    b, c = 2, 3
    levels = [torch.randn(b, 5 + c, s, s) for s in (4, 2, 1)]
    raw, anchors = flatten_levels(levels, c)
    split = [(x[:, :4], x[:, 4:5], x[:, 5:]) for x in levels]
    raw2, _ = flatten_levels(split, c)
    assert raw.shape == (b, 21, 8) and torch.equal(raw, raw2)
    assert anchors.stride.tolist() == [8.0] * 16 + [16.0] * 4 + [32.0]
    with pytest.raises(PredNASError, match="expected 3"):
        flatten_levels(levels[:2], c)


def test_loss_prefers_correct_boxes_and_handles_images_without_boxes() -> None:
    c = 2
    target = torch.tensor([[1.0, 8, 8, 24, 24]])  # one box of class 1 centred on cell (1, 1) of stride 8... (16, 16)
    levels = [torch.zeros(1, 5 + c, s, s, requires_grad=True) for s in (4, 2, 1)]
    losses = yolox_loss(levels, [target], c)
    losses["loss"].backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in levels)
    good = [torch.zeros(1, 5 + c, s, s) for s in (4, 2, 1)]
    good[0][0, 2:4] = float(np.log(2.0))  # size 16 at stride 8: every candidate cell predicts w = h = 16
    good[0][0, :2] = 0.5  # offsets to the cell centres... the box centre is at a cell corner, close enough
    assert yolox_loss(good, [target], c)["iou"] < losses["iou"]
    empty = yolox_loss(levels, [torch.zeros(0, 5)], c)
    assert empty["iou"] == 0 and empty["cls"] == 0 and empty["obj"] > 0


def test_coco_metrics_of_the_ground_truth_is_perfect(tmp_path: Path) -> None:
    data = minimal_coco()
    (tmp_path / "a.jpg").write_bytes(b"")
    split = load_coco_split(write_json(tmp_path / "a.json", data), tmp_path)
    perfect = coco_metrics(split, [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 0.9}])
    assert perfect["ap"] == pytest.approx(1.0) and perfect["ap50"] == pytest.approx(1.0)
    assert coco_metrics(split, [])["ap"] == 0.0


def tiny_detector(num_classes: int):
    from prednas.spaces.yolox import build, make

    arch = make(8, ([1] * 4, [8, 16, 24, 32], [0.5] * 4), ([1] * 4, [16, 8, 16, 32], [0.5] * 4),
                [([8], [8], [8])] * 3)
    return build(arch, num_classes)


@needs_coco
def test_training_runs_resumes_and_scores(tmp_path: Path) -> None:
    train = load_coco_split(TRAIN_JSON, COCO / "images", limit=4)
    recipe = DetectionRecipe(epochs=3, batch_size=2, input_size=64, warmup_epochs=1, no_aug_epochs=1, seed=3)
    first = build_seeded(lambda: tiny_detector(train.num_classes), 0)
    full = train_detector(first, train, train, recipe)
    assert set(full.metrics) == {"ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"}
    assert full.iterations == 6 and full.iterations_per_s > 0
    assert full.history[-1]["l1"] > 0 and full.history[0]["l1"] == 0  # L1 joins in the no-aug epochs
    checkpoints = Checkpointer("det", tmp_path)

    def stop(stats: dict) -> None:
        if stats["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_detector(build_seeded(lambda: tiny_detector(train.num_classes), 0), train, train, recipe,
                       checkpointer=checkpoints, on_epoch=stop)
    second = build_seeded(lambda: tiny_detector(train.num_classes), 0)
    resumed = train_detector(second, train, train, recipe, checkpointer=checkpoints)
    assert resumed.resumed_from == 2 and resumed.metrics == full.metrics
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                 strict=True))


def test_recipe_validation() -> None:
    with pytest.raises(PredNASError, match="input_size=100 is out of range; expected a multiple of 32"):
        DetectionRecipe(input_size=100)
    with pytest.raises(PredNASError, match="unknown detection recipe key"):
        DetectionRecipe.from_dict({"mixup": True})
    with pytest.raises(PredNASError, match="iou_loss"):
        DetectionRecipe(iou_loss="ciou")
    assert copy.deepcopy(DetectionRecipe(epochs=20)).no_aug_epochs == 15


@needs_coco
def test_persistent_workers_do_not_change_the_run() -> None:
    from prednas.train.runtime import Runtime

    train = load_coco_split(TRAIN_JSON, COCO / "images", limit=4)
    recipe = DetectionRecipe(epochs=3, batch_size=2, input_size=64, warmup_epochs=1, no_aug_epochs=1, seed=1,
                             ema=False)
    runs = []
    for workers in (0, 2):
        model = build_seeded(lambda: tiny_detector(train.num_classes), 0)
        runs.append(train_detector(model, train, train, recipe, Runtime(device="cpu", workers=workers)))
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert runs[0].metrics == runs[1].metrics
