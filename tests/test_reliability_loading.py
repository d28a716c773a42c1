"""Safe loading: no code path unpickles arbitrary objects, and crafted pickles in the store are refused.

The source check walks the syntax tree of every module the product ships (``prednas``,
``components``, ``pipelines``): each ``torch.load`` passes ``weights_only=True``, each
``np.load`` ``allow_pickle=False``, and nothing calls ``pickle``/``dill``/``joblib``/
``marshal`` loaders, ``yaml.load`` with an unsafe loader, or MLflow's pickle-based model
flavours. The crafted payloads run ``os.mkdir`` when unpickled; each is placed in a triplet
store as a predictor or a checkpoint and must be refused without creating the folder.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import pickle
import time
from pathlib import Path

import pytest
import torch

from prednas.errors import PredNASError
from prednas.pipeline.config import load_config
from prednas.pipeline.context import SearchContext
from prednas.pipeline.state import SearchState
from prednas.predictors.fit import Predictor
from prednas.spaces import get_space
from prednas.store import open_store
from prednas.train.checkpoint import MAGIC, Checkpointer, read_checkpoint

ROOT = Path(__file__).parents[1]
SHIPPED = sorted(p for folder in ("prednas", "components", "pipelines") for p in (ROOT / folder).rglob("*.py"))
UNSAFE_CALLS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("dill", "load"),
                ("dill", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"), ("joblib", "load"),
                ("marshal", "load"), ("marshal", "loads"), ("yaml", "unsafe_load"), ("yaml", "full_load"),
                ("shelve", "open"), ("pytorch", "load_model"), ("sklearn", "load_model")}


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_loads(path: Path) -> list[str]:
    """Every call in ``path`` that could unpickle code, as ``file:line: call``."""
    problems, text = [], path.read_text()
    label = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(ast.parse(text, str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        where = f"{label}:{node.lineno}: {'.'.join(name)}"
        if name[-2:] == ("torch", "load") or (name == ("load",) and "from torch import load" in text):
            flag = _keyword(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                problems.append(f"{where} without weights_only=True")
        elif name[-2:] in (("np", "load"), ("numpy", "load")):
            flag = _keyword(node, "allow_pickle")  # numpy's default is False
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                problems.append(f"{where} with allow_pickle not False")
        elif name[-2:] in UNSAFE_CALLS:
            problems.append(where)
        elif name[-2:] == ("yaml", "load"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if not (loader is not None and _dotted(loader)[-1:] in (("SafeLoader",), ("CSafeLoader",))):
                problems.append(f"{where} without SafeLoader")
    return problems


def test_every_load_in_the_product_is_safe() -> None:
    assert len(SHIPPED) > 50  # the walk found the package
    torch_loads = [p for p in SHIPPED if "torch.load(" in p.read_text()]
    assert torch_loads, "no torch.load found: the check would pass vacuously"
    problems = [problem for path in SHIPPED for problem in unsafe_loads(path)]
    assert problems == []


def test_the_source_check_catches_unsafe_loads(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text("import pickle, torch, yaml, numpy as np\n"
                   "torch.load('a')\ntorch.load('a', weights_only=False)\npickle.loads(b'')\n"
                   "yaml.load('a', Loader=yaml.Loader)\nnp.load('a', allow_pickle=True)\n"
                   "torch.load('a', weights_only=True)\nyaml.load('a', Loader=yaml.SafeLoader)\n")
    found = unsafe_loads(bad)
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in found] == ["2", "3", "4", "5", "6"]


# -- crafted payloads ----------------------------------------------------------------------
class Exploit:
    """Creates ``target`` when unpickled (what a malicious payload would do instead)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def payloads(target: Path) -> dict[str, bytes]:
    """Crafted pickles, raw and in torch's zip format, as predictor states and checkpoints."""
    def saved(obj: object) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    state = saved({"state_dict": Exploit(target), "mean": 0.0, "std": 1.0})
    checkpoint = saved({"format": 1, "fingerprint": "f" * 16, "epoch": 3, "state": {"model": Exploit(target)}})
    return {"raw pickle": pickle.dumps(Exploit(target)), "legacy torch pickle": pickle.dumps({"x": Exploit(target)}),
            "torch zip predictor": state, "torch zip checkpoint": checkpoint,
            "checkpoint with a valid header": MAGIC + hashlib.sha256(checkpoint).digest() + checkpoint}


KINDS = list(payloads(Path("x")))


def test_the_payloads_are_live(tmp_path: Path) -> None:
    """Control: loaded unsafely, a payload does run (so the refusals below mean something)."""
    target = tmp_path / "pwned"
    torch.load(io.BytesIO(payloads(target)["torch zip predictor"]), weights_only=False)
    assert target.is_dir()


@pytest.mark.parametrize("kind", KINDS)
def test_crafted_predictor_in_the_store_is_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "pwned"
    store = open_store(str(tmp_path / "store"))
    key = store.put_bytes("artifacts/predictors/nb201/accuracy/state.pt", payloads(target)[kind])
    with pytest.raises(PredNASError, match="not a prednas predictor"):
        Predictor.from_bytes(get_space("nb201"), store.get_bytes(key))
    assert not target.exists(), "the payload ran"


@pytest.mark.parametrize("kind", KINDS)
def test_search_step_refuses_a_crafted_predictor(tmp_path: Path, kind: str) -> None:
    from prednas.pipeline import steps

    target = tmp_path / "pwned"
    spec = load_config(None, ["n=6", "k=4", f"store_uri={tmp_path / 'store'}", "tracking_uri=sqlite:///unused.db"])
    context = SearchContext(spec, "run", "0" * 32, time.time())
    with pytest.raises(PredNASError, match="not a prednas predictor"):
        steps.search(context, payloads(target)[kind], None, SearchState(versions=[{}]), 1)
    assert not target.exists(), "the payload ran"


@pytest.mark.parametrize("kind", KINDS)
def test_crafted_checkpoint_in_the_store_is_refused(tmp_path: Path, kind: str, caplog) -> None:
    target = tmp_path / "pwned"
    store = open_store(str(tmp_path / "store"))
    data = payloads(target)[kind]
    store.put_bytes("artifacts/checkpoints/ffffffffffffffff.pt", data)
    checkpointer = Checkpointer("f" * 16, store=store, key="artifacts/checkpoints/ffffffffffffffff.pt")
    assert checkpointer.load() is None  # set aside: training starts over
    assert "training starts over" in caplog.text
    (tmp_path / "ckpt.pt").write_bytes(data)
    with pytest.raises(PredNASError, match="not a readable prednas checkpoint"):
        read_checkpoint(tmp_path / "ckpt.pt")
    assert not target.exists(), "the payload ran"
