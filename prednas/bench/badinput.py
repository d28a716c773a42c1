"""Malformed inputs for every registered space: architectures, encodings and search configs.

The generator behind the bad-input rows of ``prednas bench reliability`` (the property
tests in ``tests/test_properties.py`` drive the same checks with hypothesis). Inputs are
valid values edited at random places (a field deleted, added, retyped, pushed out of
range, a list resized), random JSON-like values, arrays of any shape and dtype with NaN,
inf and huge values, and YAML configs edited or cut short. Each input must give a valid
result or ``PredNASError`` with a one-line message; anything else is counted as a failure
and its exception type kept for the report.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from prednas.errors import PredNASError

EDGES: tuple[Any, ...] = (0, -1, 1, 7, 8, 9, 64, 65, 8192, 8193, 2**31, 2**63, 10**400, -10**400, 0.5, 1.5, -0.0,
                          1e308, -1e308, math.nan, math.inf, -math.inf, True, False, "8", "", None, [], {})
KEYS: tuple[Any, ...] = ("arch", "depths", "widths", "groups", "stem", "heads", "name", "n", "seed", "alphas",
                         "cost", "extra", "", 0, 1)
KINDS = ("architecture", "encoding", "config")


def random_value(rng: np.random.Generator, depth: int = 2) -> Any:
    """A random JSON-like value: an edge number, text, or a small list or mapping of such."""
    kind = rng.integers(0, 5 if depth > 0 else 3)
    if kind == 0:
        return EDGES[rng.integers(len(EDGES))]
    if kind == 1:
        return float(rng.normal() * 10.0 ** rng.integers(-3, 12))
    if kind == 2:
        return "".join(rng.choice(list("ab|~+01_ :{}[]-"), size=rng.integers(0, 12)))
    if kind == 3:
        return [random_value(rng, depth - 1) for _ in range(rng.integers(0, 6))]
    return {KEYS[rng.integers(len(KEYS))]: random_value(rng, depth - 1) for _ in range(rng.integers(0, 4))}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, item in items:
        out += _paths(item, (*prefix, key))
    return out


def _at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def mutate(value: Any, rng: np.random.Generator, edits: int) -> Any:
    """A copy of ``value`` with ``edits`` random edits (replace, delete, add, resize, wrap, stringify)."""
    value = copy.deepcopy(value)
    for _ in range(edits):
        paths = _paths(value)
        path = paths[rng.integers(len(paths))]
        target, op = _at(value, path), rng.integers(0, 6)
        new: Any = target
        if op == 0:
            new = random_value(rng)
        elif op == 1:
            new = EDGES[rng.integers(len(EDGES))]
        elif op == 2 and path:
            del _at(value, path[:-1])[path[-1]]
            continue
        elif op == 3 and isinstance(target, dict):
            target[KEYS[rng.integers(len(KEYS))]] = random_value(rng)
        elif op == 4 and isinstance(target, list):
            new = (target + target[-1:] * 3)[: rng.integers(0, len(target) + 4)]
        elif op == 5:
            new = [target] if rng.random() < 0.5 else json.dumps(target, default=str)
        if not path:
            value = new
        else:
            _at(value, path[:-1])[path[-1]] = new
    return value


def valid_arch(space: Any, rng: np.random.Generator) -> dict[str, Any]:
    """The JSON form of a sampled architecture or, one time in three, a preset."""
    presets = getattr(space, "presets", list)()
    if presets and rng.random() < 1 / 3:
        return space.to_dict(space.preset(presets[rng.integers(len(presets))]))
    return space.to_dict(space.sample(rng))


def bad_architecture(space: Any, rng: np.random.Generator) -> Any:
    """A valid architecture with 1 to 4 edits, or (one time in four) a random value."""
    if rng.random() < 0.25:
        return random_value(rng)
    return mutate(valid_arch(space, rng), rng, int(rng.integers(1, 5)))


def bad_encoding(space: Any, rng: np.random.Generator) -> Any:
    """An array of the parameter's shape or another, of any dtype, with NaN/inf/huge entries; or a non-array."""
    shape = tuple(space.param_shape)
    choice = rng.integers(0, 4)
    if choice == 3:
        return random_value(rng)
    if choice == 0:
        shape = tuple(int(s) for s in rng.integers(0, 9, size=rng.integers(0, 4)))
    x = np.asarray(rng.normal(size=shape) * 10.0 ** rng.integers(0, 300))
    holes = rng.random(size=shape) < 0.2
    x[holes] = rng.choice([np.nan, np.inf, -np.inf, 1e308], size=int(holes.sum()))
    dtype = [np.float64, np.float32, np.float16, np.int64, np.bool_][rng.integers(0, 5)]
    with np.errstate(all="ignore"):
        return x.astype(dtype) if choice == 1 else x.tolist()


def base_config(space_name: str) -> dict[str, Any]:
    """A shipped config of the space, else a minimal one naming it."""
    from importlib import resources

    from prednas.pipeline.config import read_yaml

    folder = Path(str(resources.files("prednas.pipelines") / "configs"))
    for path in sorted(folder.glob("*.yaml")):
        data = read_yaml(path)
        if data.get("space") == space_name:
            return data
    return {"space": space_name}


def bad_config(space_name: str, rng: np.random.Generator) -> str:
    """YAML text: the space's config with 1 to 3 edits, or its text cut short or garbled."""
    import yaml

    base = base_config(space_name)
    if rng.random() < 0.7:
        try:
            return yaml.safe_dump(mutate(base, rng, int(rng.integers(1, 4))), allow_unicode=True)
        except (yaml.YAMLError, OverflowError):
            pass  # not expressible as YAML: garble the text instead
    text = yaml.safe_dump(base)
    cut = int(rng.integers(0, len(text) + 1))
    noise = "".join(rng.choice(list(":-[]{}!&*#|>'\"%@` \n\t"), size=rng.integers(1, 8)))
    return text[:cut] + (noise + text[cut:] if rng.random() < 0.5 else "")


def _check_arch(space: Any, arch: Any) -> None:
    """A valid result must work through the whole space protocol."""
    from prednas.spaces import arch_id

    assert space.from_dict(json.loads(json.dumps(space.to_dict(arch)))) == arch
    x = space.encode(arch)
    assert x.shape == tuple(space.encoding_shape) and np.all(np.isfinite(x))
    assert all(math.isfinite(v) for v in space.cost(arch).values()) and arch_id(space, arch)


def attempt(call: Callable[[], Any], check: Callable[[Any], None]) -> str:
    """'valid', 'error' (a one-line PredNASError) or 'other:<type>' (anything else, a failed check included)."""
    try:
        with np.errstate(over="ignore"):  # huge finite entries overflow to inf inside project(), which clips them
            result = call()
    except PredNASError as exc:
        return "error" if str(exc) and "\n" not in str(exc) else "other:multi-line PredNASError"
    except Exception as exc:  # noqa: BLE001 - counting every other failure is the point
        return f"other:{type(exc).__name__}"
    try:
        check(result)
    except Exception as exc:  # noqa: BLE001
        return f"other:invalid result ({type(exc).__name__})"
    return "valid"


def try_space(name: str, count: int, rng: np.random.Generator) -> dict[str, Counter[str]]:
    """``count`` malformed inputs of each kind for one space; outcome counts per kind."""
    from prednas.pipeline.config import load_config
    from prednas.spaces import get_space

    space = get_space(name)
    out = {kind: Counter() for kind in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        for _ in range(count):
            value = bad_architecture(space, rng)
            out["architecture"][attempt(lambda v=value: space.from_dict(v), lambda a: _check_arch(space, a))] += 1
            theta = bad_encoding(space, rng)
            out["encoding"][attempt(lambda t=theta: space.project(t), lambda a: _check_arch(space, a))] += 1
            path.write_text(bad_config(name, rng))
            out["config"][attempt(lambda: load_config(path), lambda spec: None)] += 1
    return out


def bad_input_rows(count: int, seed: int) -> list[dict[str, Any]]:
    """One row per registered space: inputs tried, valid results, proper errors, other outcomes."""
    from prednas.spaces import space_names

    rows = []
    for i, name in enumerate(space_names()):
        started = time.perf_counter()
        outcomes = try_space(name, count, np.random.default_rng([seed, i]))
        total = sum(outcomes.values(), Counter())
        others = {k[len("other:"):]: v for k, v in total.items() if k.startswith("other:")}
        rows.append({"space": name, "tried": sum(total.values()), "valid": total["valid"], "error": total["error"],
                     "other": sum(others.values()), "other_types": others,
                     "per_kind": {kind: dict(c) for kind, c in outcomes.items()},
                     "seconds": time.perf_counter() - started})
    return rows
