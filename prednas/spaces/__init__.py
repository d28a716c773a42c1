"""Registry of search spaces: ``get_space(name)`` returns a ready instance."""

from __future__ import annotations

from collections.abc import Callable

from prednas.errors import PredNASError
from prednas.spaces.base import SearchSpace, arch_id

_FACTORIES: dict[str, Callable[[], SearchSpace]] = {}
_INSTANCES: dict[str, SearchSpace] = {}


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    """Register a space factory under ``name``."""
    _FACTORIES[name] = factory


def space_names() -> list[str]:
    """Names of every registered space, sorted."""
    return sorted(_FACTORIES)


def get_space(name: str) -> SearchSpace:
    """The registered space called ``name``; an unknown name lists the known ones."""
    if name not in _FACTORIES:
        raise PredNASError(f"unknown search space {name!r}; expected one of: {', '.join(space_names())}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


def _nb201() -> SearchSpace:
    from prednas.spaces.nb201 import NB201Space

    return NB201Space()


register_space("nb201", _nb201)


def _anynet() -> SearchSpace:
    from prednas.spaces.anynet import AnyNetSpace

    return AnyNetSpace()


def _yolox() -> SearchSpace:
    from prednas.spaces.yolox import YOLOXSpace

    return YOLOXSpace()


def _natssss() -> SearchSpace:
    from prednas.spaces.natssss import NatsSssSpace

    return NatsSssSpace()


register_space("anynet", _anynet)
register_space("yolox", _yolox)
register_space("natssss", _natssss)

__all__ = ["SearchSpace", "arch_id", "get_space", "register_space", "space_names"]
