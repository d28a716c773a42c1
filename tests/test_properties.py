"""Property tests: malformed architectures, encodings and configs for every registered space.

Each generated input must give either a valid result (which then works through the whole
space protocol) or ``PredNASError`` with a one-line message: never another exception
type, and never a hang (hypothesis' deadline). Inputs are valid values mutated at random
places (a field deleted, added, retyped, pushed out of range, a list resized) and wholly
random JSON-like values; encodings are arrays of any shape and dtype with NaN, inf and
huge values, and non-arrays; configs are the shipped YAML configs mutated the same way,
YAML text cut or garbled, and ``key=value`` overrides.

The count of inputs tried per space and kind, and how many got the proper error, is
printed in pytest's summary (``inputs tried``).
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prednas.errors import PredNASError
from prednas.pipeline.config import SearchSpec, load_config, read_yaml, spec_from_dict
from prednas.spaces import arch_id, get_space, space_names

SPACES = space_names()
CONFIGS = Path(__file__).parents[1] / "pipelines" / "configs"
SETTINGS = settings(max_examples=200, deadline=10_000, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CONFIG_SETTINGS = settings(SETTINGS, max_examples=60)  # each example loads a config: ~0.1 s
TRIED: Counter[tuple[str, str, str]] = Counter()  # (space, kind, "valid" | "error")

EDGE_NUMBERS = [0, -1, 1, 2, 7, 8, 9, 63, 64, 65, 1024, 8192, 8193, 2**31, 2**63, 10**400, -10**400, 0.5, 1.5,
                0.25, -0.0, 1e308, -1e308, 1e-320, math.nan, math.inf, -math.inf, True, False, "8", "", None]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(EDGE_NUMBERS))
KEYS = st.text(max_size=10) | st.integers(-3, 3) | st.sampled_from(
    ["arch", "depths", "widths", "ratios", "groups", "stem", "backbone", "neck", "heads", "shared", "cls", "reg",
     "space", "evaluator", "name", "n", "k", "seed", "predictor", "gradient", "alphas", "cost", "resources"])
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=5),
                       max_leaves=25)


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> None:
    """Print the inputs tried per space and kind at the end of the session."""

    class Summary:
        def pytest_terminal_summary(self, terminalreporter: Any) -> None:
            terminalreporter.section("inputs tried (tests/test_properties.py)")
            for line in summary_lines():
                terminalreporter.write_line(line)

    request.config.pluginmanager.register(Summary(), "prednas-property-summary")


def summary_lines() -> list[str]:
    """One line per (space, kind): inputs tried, valid results, proper errors."""
    lines = [f"{'space':<8} {'kind':<13} {'tried':>6} {'valid':>6} {'PredNASError':>13}"]
    for space, kind in sorted({(s, k) for s, k, _ in TRIED}):
        valid, error = TRIED[space, kind, "valid"], TRIED[space, kind, "error"]
        lines.append(f"{space:<8} {kind:<13} {valid + error:>6} {valid:>6} {error:>13}")
    return lines


def outcome(space: str, kind: str, call: Any) -> Any:
    """``call()``'s result, or None after a proper one-line PredNASError; counts the input."""
    try:
        result = call()
    except PredNASError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        TRIED[space, kind, "error"] += 1
        return None
    TRIED[space, kind, "valid"] += 1
    return result


# -- mutating valid values ---------------------------------------------------------------
def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


def _get(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def _set(root: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


def mutate(data: st.DataObject, value: Any, steps: int) -> Any:
    """``value`` with ``steps`` random edits: replace, delete, add a key, resize a list, retype."""
    value = copy.deepcopy(value)
    for _ in range(steps):
        path = data.draw(st.sampled_from(_paths(value)))
        target = _get(value, path)
        op = data.draw(st.sampled_from(["replace", "edge", "delete", "add", "resize", "wrap", "text"]))
        if op == "replace":
            value = _set(value, path, data.draw(JSONISH))
        elif op == "edge":
            value = _set(value, path, data.draw(st.sampled_from(EDGE_NUMBERS)))
        elif op == "delete" and path:
            parent = _get(value, path[:-1])
            del parent[path[-1]]
        elif op == "add" and isinstance(target, dict):
            target[data.draw(KEYS)] = data.draw(JSONISH)
        elif op == "resize" and isinstance(target, list):
            size = data.draw(st.integers(0, len(target) + 3))
            filler = target[-1] if target else 1
            value = _set(value, path, (target + [copy.deepcopy(filler)] * 3)[:size])
        elif op == "wrap":
            value = _set(value, path, [target])
        elif op == "text":
            value = _set(value, path, json.dumps(target) if not isinstance(target, str) else target + "x")
    return value


def valid_arch_dict(space: Any, seed: int) -> dict[str, Any]:
    """The JSON form of a sampled architecture (or a preset)."""
    rng = np.random.default_rng(seed)
    presets = getattr(space, "presets", lambda: [])()
    if presets and seed % 3 == 0:
        return space.to_dict(space.preset(presets[seed % len(presets)]))
    return space.to_dict(space.sample(rng))


# -- architectures -----------------------------------------------------------------------
def check_valid_arch(space: Any, arch: Any) -> None:
    """A parsed architecture works through the whole protocol."""
    data = space.to_dict(arch)
    assert space.from_dict(json.loads(json.dumps(data))) == arch
    x = space.encode(arch)
    assert x.shape == tuple(space.encoding_shape) and x.dtype == np.float32 and np.all(np.isfinite(x))
    cost = space.cost(arch)
    assert {"macs", "flops", "params"} <= set(cost) and all(math.isfinite(v) and v >= 0 for v in cost.values())
    assert len(arch_id(space, arch)) == 16 and isinstance(space.equivalence_key(arch), str)
    assert space.project(space.param(arch)) is not None


@pytest.mark.parametrize("name", SPACES)
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16), steps=st.integers(1, 4))
def test_mutated_architectures(name: str, data: st.DataObject, seed: int, steps: int) -> None:
    space = get_space(name)
    bad = mutate(data, valid_arch_dict(space, seed), steps)
    arch = outcome(name, "architecture", lambda: space.from_dict(bad))
    if arch is not None:
        check_valid_arch(space, arch)


@pytest.mark.parametrize("name", SPACES)
@SETTINGS
@given(value=JSONISH)
def test_random_values_as_architectures(name: str, value: Any) -> None:
    space = get_space(name)
    arch = outcome(name, "architecture", lambda: space.from_dict(value))
    if arch is not None:
        check_valid_arch(space, arch)


# -- encodings ---------------------------------------------------------------------------
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.sampled_from([1e308, -1e308, 1e30, -1e30])


def encodings(shape: tuple[int, ...]) -> st.SearchStrategy[Any]:
    """Arrays of the parameter's shape or any other, of any real dtype, plus non-arrays."""
    shapes = st.just(shape) | hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12) | st.just(
        (int(np.prod(shape)),))
    floats = hnp.arrays(st.sampled_from([np.float64, np.float32, np.float16]), shapes,
                        elements=st.floats(allow_nan=True, allow_infinity=True, width=16))
    wide = hnp.arrays(np.float64, shapes, elements=FLOATS)
    ints = hnp.arrays(st.sampled_from([np.int64, np.int8, np.uint8, np.bool_]), shapes)
    lists = st.lists(FLOATS, max_size=80) | st.lists(st.lists(FLOATS, max_size=9), max_size=9)
    return floats | wide | ints | lists | JSONISH


@pytest.mark.parametrize("name", SPACES)
@SETTINGS
@given(data=st.data())
def test_encodings_project_or_refuse(name: str, data: st.DataObject) -> None:
    space = get_space(name)
    theta = data.draw(encodings(tuple(space.param_shape)))
    arch = outcome(name, "encoding", lambda: space.project(theta))
    if arch is not None:
        check_valid_arch(space, arch)
        if hasattr(space, "check_range"):
            space.check_range(arch)  # projection always lands in the search range


# -- configs -----------------------------------------------------------------------------
def base_config(name: str) -> dict[str, Any]:
    """A shipped config of the space, else a minimal one naming it."""
    for path in sorted(CONFIGS.glob("*.yaml")):
        data = read_yaml(path)
        if data.get("space") == name:
            return data
    return {"space": name}


def check_valid_spec(spec: SearchSpec, path: Path) -> None:
    """A loaded spec survives its own round trips (YAML form and pipeline arguments)."""
    path.write_text(yaml.safe_dump(spec.to_dict()))
    assert load_config(path) == spec
    assert SearchSpec.from_arguments(spec.to_arguments()).to_arguments() == spec.to_arguments()


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each generated config is written (examples run one after another)."""
    return tmp_path_factory.mktemp("config") / "config.yaml"


@pytest.mark.parametrize("name", SPACES)
@CONFIG_SETTINGS
@given(data=st.data(), steps=st.integers(1, 3))
def test_mutated_configs(name: str, data: st.DataObject, steps: int, config_path: Path) -> None:
    bad = mutate(data, base_config(name), steps)
    path = config_path
    try:
        path.write_text(yaml.safe_dump(bad, allow_unicode=True))
    except (yaml.YAMLError, OverflowError):  # not expressible as YAML
        return
    spec = outcome(name, "config", lambda: load_config(path))
    if spec is not None:
        check_valid_spec(spec, path)


@pytest.mark.parametrize("name", SPACES)
@CONFIG_SETTINGS
@given(data=st.data())
def test_garbled_config_text(name: str, data: st.DataObject, config_path: Path) -> None:
    text = yaml.safe_dump(base_config(name))
    cut = data.draw(st.integers(0, len(text)))
    noise = data.draw(st.text(alphabet=st.sampled_from(list(":-[]{}!&*#|>'\"%@` \n\t\\x0")), max_size=8))
    garbled = data.draw(st.sampled_from([text[:cut], text[:cut] + noise + text[cut:], noise * 3, text + noise]))
    path = config_path
    path.write_bytes(garbled.encode("utf-8", "surrogatepass"))
    spec = outcome(name, "config text", lambda: load_config(path))
    if spec is not None:
        check_valid_spec(spec, path)


@pytest.mark.parametrize("name", SPACES)
@CONFIG_SETTINGS
@given(overrides=st.lists(
    st.tuples(st.sampled_from(["n", "k", "seed", "alphas", "cost", "cost.target", "predictor.epochs", "gradient.lr",
                               "evaluator", "evaluator.name", "resources.cpu", "space", "shards", "x", "a..b", ""]),
              st.sampled_from(["", "=", "=="]),
              st.sampled_from(["3", "20", "0.5", "[0, 0.5]", "{metric: flops, target: 2.0e+8, window: 1.0e+7}", "adam",
                               "nb201", "null", "{}"]) | st.text(max_size=12)
              | JSONISH.map(lambda v: json.dumps(v, default=str))),
    min_size=1, max_size=3))
def test_overrides(name: str, overrides: list[tuple[str, str, str]], config_path: Path) -> None:
    path = config_path
    path.write_text(yaml.safe_dump(base_config(name)))
    items = [f"{key}{sep}{value}" for key, sep, value in overrides]
    spec = outcome(name, "override", lambda: load_config(path, items))
    if spec is not None:
        check_valid_spec(spec, path)


# -- inputs that once raised something else than PredNASError ------------------------------
def _with(space: str, **changes: Any) -> dict[str, Any]:
    return {**valid_arch_dict(get_space(space), 1), **changes}


ARCH_REGRESSIONS = [
    ("anynet", {"": None, 0: None}),  # unknown keys of mixed types could not be sorted
    ("yolox", {"stem": 8, "heads": [{1: 2, "a": 3}] * 3}),
    ("anynet", _with("anynet", depths=[10**400] * 4)),  # float(10**400) overflowed
    ("anynet", _with("anynet", ratios=[10**400, 1, 1, 1])),
    ("yolox", _with("yolox", stem=10**400)),
]


@pytest.mark.parametrize(("name", "value"), ARCH_REGRESSIONS, ids=lambda v: str(v)[:40])
def test_architecture_regressions(name: str, value: Any) -> None:
    with pytest.raises(PredNASError):
        get_space(name).from_dict(value)


@pytest.mark.parametrize("name", SPACES)
@pytest.mark.parametrize("theta", [["a"] * 70, [[1.0, 2.0], [3.0]], object(), {"x": 1}], ids=str)
def test_encoding_regressions(name: str, theta: Any) -> None:
    with pytest.raises(PredNASError, match="must be an array of numbers"):  # was ValueError / TypeError
        get_space(name).project(theta)


@pytest.mark.parametrize(("config", "message"), [
    ({1: 2, "zz": 3}, "unknown key"),
    ({"predictor": {1: 2, "zz": 3}}, "unknown key predictor"),
    ({"cost": {"metric": "flops"}}, "cost.target is missing"),  # was TypeError from CostTarget(**...)
    ({"alphas": [10**400]}, "alphas"),  # math.isfinite(10**400) overflowed
    ({"cost": {"metric": "flops", "target": -(10**400), "window": 1}}, "cost.target"),
])
def test_config_regressions(config: dict[Any, Any], message: str) -> None:
    with pytest.raises(PredNASError, match=message):
        spec_from_dict(config)
