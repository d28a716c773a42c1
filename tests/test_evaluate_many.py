"""A shard of architectures trained one after the other or several at once: same results, same checkpoints."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from prednas.errors import PredNASError
from prednas.evaluators.base import config_hash
from prednas.evaluators.registry import evaluator_options, make_evaluator
from prednas.evaluators.training import evaluate_many
from prednas.spaces import get_space
from prednas.spaces.anynet import make_arch

ARCHS = [make_arch([1, 1, 1, 1], [8, 8, 16, 16], [1.0] * 4, [1, 1, 2, 2]),
         make_arch([1, 1, 1, 1], [8, 16, 16, 24], [1.0] * 4, [1, 2, 2, 3]),
         make_arch([1, 1, 1, 2], [8, 8, 16, 16], [1.0] * 4, [1, 1, 2, 2])]
MEASURED = ("top1", "top5", "epochs", "resumed_from", "skipped_images", "train_loss")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread, in this process and so in each worker: the runs compare bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), y_train=np.arange(32) % 3,
             x_test=rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8), y_test=np.arange(12) % 3)
    return str(path)


def config(npz: str, **options) -> dict:
    return {"name": "classification", "data": {"source": "npz", "path": npz},
            "recipe": {"epochs": 2, "batch_size": 8}, "device": "cpu", **options}


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_concurrency_must_be_a_positive_integer(npz: str, value) -> None:
    with pytest.raises(PredNASError, match=f"concurrency={value!r} is out of range; expected an integer >= 1"):
        evaluator_options(config(npz, concurrency=value))
    with pytest.raises(PredNASError, match="concurrency"):
        evaluate_many(make_evaluator(config(npz)), get_space("anynet"), ARCHS, concurrency=value)


def test_concurrency_does_not_change_what_is_measured(npz: str) -> None:
    evaluator = make_evaluator(config(npz, concurrency=3))
    assert evaluator.concurrency == 3 and make_evaluator(config(npz)).concurrency == 1
    assert config_hash(evaluator.config()) == config_hash(make_evaluator(config(npz)).config())


def test_concurrent_shard_equals_the_sequential_one(npz: str, tmp_path: Path) -> None:
    space = get_space("anynet")
    alone = evaluate_many(make_evaluator(config(npz)).attach(checkpoint_dir=tmp_path / "a"), space, ARCHS)
    evaluator = make_evaluator(config(npz, concurrency=2)).attach(checkpoint_dir=tmp_path / "b")
    together = evaluate_many(evaluator, space, ARCHS)
    assert len(together) == len(ARCHS)
    for a, b in zip(alone, together, strict=True):
        assert a.accuracy == b.accuracy and {k: a.report[k] for k in MEASURED} == {k: b.report[k] for k in MEASURED}
        assert {k: v for k, v in a.cost.items() if k != "latency_ms"} == \
               {k: v for k, v in b.cost.items() if k != "latency_ms"} and b.cost["latency_ms"] > 0
    assert len(list((tmp_path / "b").rglob("*.pt"))) == len(ARCHS)  # one checkpoint per architecture, as now
    again = evaluate_many(make_evaluator(config(npz, concurrency=2)).attach(checkpoint_dir=tmp_path / "b"), space,
                          ARCHS)
    assert [r.report["resumed_from"] for r in again] == [2.0] * len(ARCHS)
    assert [r.accuracy for r in again] == [r.accuracy for r in alone]


def test_an_evaluator_that_cannot_reach_workers_is_a_one_line_error(npz: str) -> None:
    class LockedStore:  # holds a lock, as a client with a connection pool would: it cannot be pickled
        lock = None

        def __init__(self) -> None:
            self.lock = threading.Lock()

    evaluator = make_evaluator(config(npz, concurrency=2)).attach(store=LockedStore())
    with pytest.raises(PredNASError, match="concurrency=2 needs an evaluator and store that can be sent"):
        evaluate_many(evaluator, get_space("anynet"), ARCHS)
