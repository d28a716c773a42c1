"""The triplet store contract, on the local backend and (integration) on a real S3 server."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluation, config_hash
from prednas.spaces import arch_id, get_space
from prednas.store import Triplet, TripletStore, open_store, training_hash
from prednas.store.local import LocalStore

SPACE = get_space("nb201")
CONFIG = {"evaluator": "nb201-table", "dataset": "cifar100", "signal": "valid"}
HASH = config_hash(CONFIG)


def make(seed: int, *, stage: str = "sample", accuracy: float | None = None, created_at: float | None = None,
         trial: str | None = None) -> Triplet:
    """A triplet of a seeded NB201 architecture with made-up numbers."""
    arch = SPACE.sample(np.random.default_rng(seed))
    acc = 50.0 + seed if accuracy is None else accuracy
    t = Triplet.create(SPACE, arch, CONFIG, Evaluation(acc, SPACE.cost(arch), {"test_accuracy": acc - 1}),
                       stage=stage, run_id="run-1")
    changes = {k: v for k, v in (("created_at", created_at), ("trial", trial)) if v is not None}
    return Triplet(**{**t.__dict__, **changes}) if changes else t


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TripletStore:
    """An empty store of each backend."""
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    request.getfixturevalue("s3_env")
    return open_store(request.getfixturevalue("s3_server").uri(request.getfixturevalue("s3_prefix")))


def test_json_round_trip_and_key() -> None:
    t = make(1)
    assert Triplet.from_json(t.to_json()) == t
    assert t.key == f"triplets/nb201/{HASH}/{arch_id(SPACE, SPACE.from_dict(t.arch))}/{t.trial}.json"
    assert "sha256" in json.loads(t.to_json())
    assert len({t, Triplet.from_json(t.to_json()), make(2)}) == 2  # hashable by value


def test_put_get_lookup_list(store: TripletStore) -> None:
    first, second = make(1, created_at=100.0), make(1, created_at=200.0)  # two trials of one arch
    other = make(2, created_at=150.0)
    for t in (second, other, first):
        assert store.put(t) == t.key
    assert store.get("nb201", HASH, first.arch_id) == [first, second]
    assert store.lookup("nb201", HASH, first.arch_id) == first
    assert store.lookup("nb201", HASH, "0" * 16) is None
    assert store.list("nb201", HASH) == [first, other, second]
    assert store.list("nb201", config_hash({"other": 1})) == []
    assert store.arch_ids("nb201", HASH) == {first.arch_id, other.arch_id}


def test_rerun_is_idempotent(store: TripletStore) -> None:
    batch = [make(s) for s in range(5)]
    keys = [store.put(t) for t in batch]
    assert [store.put(t) for t in batch] == keys  # a retried step stores nothing new
    assert store.list("nb201", HASH) == sorted(batch, key=lambda t: (t.created_at, t.trial))
    assert len(store.keys("triplets")) == 5


def test_same_trial_other_values_refused(store: TripletStore) -> None:
    t = make(3)
    store.put(t)
    with pytest.raises(PredNASError, match="already stored"):
        store.put(Triplet(**{**t.__dict__, "accuracy": t.accuracy + 1}))
    assert store.get("nb201", HASH, t.arch_id) == [t]


def _corruptions(t: Triplet) -> dict[str, bytes]:
    text = t.to_json()
    doc = json.loads(text)
    tampered = {**doc, "accuracy": doc["accuracy"] + 5}
    return {
        "garbage": b"\x00\xffnot json at all",
        "empty": b"",
        "truncated": text[: len(text) // 2].encode(),
        "not an object": b"[1, 2, 3]",
        "tampered value": json.dumps(tampered).encode(),
        "missing checksum": json.dumps({k: v for k, v in doc.items() if k != "sha256"}).encode(),
    }


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "not an object", "tampered value",
                                  "missing checksum"])
def test_corrupt_object_is_reported_not_used(store: TripletStore, kind: str) -> None:
    good, bad = make(4), make(5)
    store.put(good)
    store._write(bad.key, _corruptions(bad)[kind])  # a hand-written or half-written object
    with pytest.raises(PredNASError, match=f"{bad.trial}.json"):
        store.list("nb201", HASH)
    with pytest.raises(PredNASError, match=f"{bad.trial}.json"):
        store.get("nb201", HASH, bad.arch_id)
    assert store.get("nb201", HASH, good.arch_id) == [good]
    assert [key for key, _ in store.verify()] == [bad.key]


def test_moved_object_is_reported(store: TripletStore) -> None:
    t = make(6)
    moved = t.key.replace(t.trial, "f" * 32)
    store._write(moved, t.to_json().encode())
    with pytest.raises(PredNASError, match="moved or renamed"):
        store.list("nb201", HASH)


def test_checksum_valid_but_inconsistent_ids_refused() -> None:
    doc = json.loads(make(7).to_json())
    doc["arch_id"] = "0" * 16
    doc.pop("sha256")
    from prednas.store.triplet import _digest

    doc["sha256"] = _digest(doc)
    with pytest.raises(PredNASError, match="arch_id"):
        Triplet.from_json(json.dumps(doc), key="k")


@pytest.mark.parametrize("change", [{"stage": "warmup"}, {"accuracy": float("nan")}, {"accuracy": True},
                                    {"cost": {"flops": "many"}}, {"trial": "../escape"}, {"space": "a/b"},
                                    {"config_hash": "abc"}, {"evaluator": {"other": 2}}])
def test_bad_values_refused(change: dict) -> None:
    with pytest.raises(PredNASError):
        Triplet(**{**make(8).__dict__, **change})


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    t = make(9)

    def crash(*_: object) -> None:
        raise KeyboardInterrupt  # the process dies between writing and publishing

    monkeypatch.setattr(os, "link", crash)
    with pytest.raises(KeyboardInterrupt):
        store.put(t)
    monkeypatch.undo()
    assert store.list("nb201", HASH) == []  # nothing half-written is visible
    (tmp_path / t.key).parent.joinpath(f".{t.trial}.json.dead.tmp").write_text('{"trunc')  # a killed writer
    store.put(t)
    assert store.list("nb201", HASH) == [t]
    assert sorted(p.name for p in (tmp_path / t.key).parent.iterdir()) == [f".{t.trial}.json.dead.tmp",
                                                                          f"{t.trial}.json"]


def test_concurrent_creates_never_overwrite(store: TripletStore) -> None:
    t = make(10)
    won: list[bool] = []
    payloads = [t.to_json().replace('"run_id": "run-1"', f'"run_id": "w{i}"').encode() for i in range(8)]
    threads = [threading.Thread(target=lambda d=d: won.append(store._create(t.key, d))) for d in payloads]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(won) == [False] * 7 + [True]
    assert store._read(t.key) in payloads


def test_concurrent_trials_all_kept(store: TripletStore) -> None:
    trials = [make(11, created_at=float(i)) for i in range(6)]  # one arch measured by six writers
    threads = [threading.Thread(target=store.put, args=(t,)) for t in trials]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.get("nb201", HASH, trials[0].arch_id) == trials


def test_claims(store: TripletStore) -> None:
    aid = make(12).arch_id
    assert store.claim("nb201", HASH, aid, "run-a")
    assert store.claim("nb201", HASH, aid, "run-a")  # re-entrant
    assert not store.claim("nb201", HASH, aid, "run-b")
    store.release("nb201", HASH, aid, "run-b")  # not the holder: no effect
    assert not store.claim("nb201", HASH, aid, "run-b")
    store.release("nb201", HASH, aid, "run-a")
    assert store.claim("nb201", HASH, aid, "run-b", ttl_s=-1)  # already expired
    assert store.claim("nb201", HASH, aid, "run-c")  # takes over the expired claim


def test_artifacts(store: TripletStore) -> None:
    assert not store.exists("artifacts/run-1/predictor.pt")
    store.put_bytes("artifacts/run-1/predictor.pt", b"v1")
    store.put_bytes("artifacts/run-1/predictor.pt", b"v2")  # artifacts may be replaced
    assert store.get_bytes("artifacts/run-1/predictor.pt") == b"v2"
    assert store.exists("artifacts/run-1/predictor.pt")
    assert store.keys("artifacts") == ["artifacts/run-1/predictor.pt"]
    store.delete("artifacts/run-1/predictor.pt")
    with pytest.raises(PredNASError, match="no object"):
        store.get_bytes("artifacts/run-1/predictor.pt")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "triplets/x.json", "claims/x.json", "a\\b"])
def test_bad_artifact_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(PredNASError, match="key"):
        open_store(str(tmp_path)).put_bytes(key, b"x")


def test_open_store_uris(tmp_path: Path) -> None:
    assert open_store(str(tmp_path / "a")).uri == (tmp_path / "a").as_uri()
    assert open_store((tmp_path / "b").as_uri()).root == tmp_path / "b"
    (tmp_path / "file").write_text("x")
    for uri, match in [("ftp://host/x", "scheme"), ("file://host/x", "file URI"), ("s3://", "S3 store URI"),
                       (str(tmp_path / "file"), "is a file"), ("", "store URI"), ("s3://Bad_Bucket/x", "bucket")]:
        with pytest.raises(PredNASError, match=match):
            open_store(uri)


def test_training_hash() -> None:
    a, b = make(13), make(14)
    assert training_hash([a, b]) == training_hash([b, a])
    assert training_hash([a]) != training_hash([a, b])
    assert training_hash([a]) != training_hash([Triplet(**{**a.__dict__, "accuracy": 1.0})])


def test_s3_without_conditional_writes_falls_back_to_head_then_put() -> None:
    import boto3
    from botocore.stub import ANY, Stubber

    from prednas.store.s3 import S3Store

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    t = make(15)
    key = f"p/{t.key}"
    with Stubber(client) as stub:
        stub.add_response("head_bucket", {}, {"Bucket": "bucket"})
        stub.add_client_error("put_object", "NotImplemented", http_status_code=501)  # no If-None-Match
        stub.add_client_error("head_object", "404", http_status_code=404, expected_params={"Bucket": "bucket",
                                                                                           "Key": key})
        stub.add_response("put_object", {}, {"Bucket": "bucket", "Key": key, "Body": ANY, "ContentType": ANY})
        stub.add_response("head_object", {}, {"Bucket": "bucket", "Key": key})  # a second put: exists
        stub.add_response("get_object", {"Body": _body(t.to_json().encode())}, {"Bucket": "bucket", "Key": key})
        store = S3Store("bucket", "p", client=client)
        assert store.put(t) == t.key
        assert store.put(t) == t.key  # idempotent without a conditional write
        stub.assert_no_pending_responses()


def _body(data: bytes) -> object:
    import io

    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))
