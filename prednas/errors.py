"""The project's error type: a user's mistake, reported in one line."""

from __future__ import annotations


class PredNASError(Exception):
    """A bad input or an unusable environment; the message is one line for the user."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def require(condition: bool, message: str) -> None:
    """Raise PredNASError(message) unless condition holds."""
    if not condition:
        raise PredNASError(message)


class SettingError(PredNASError):
    """A bad value under one config key; ``key`` is relative to the mapping that was checked (``data.path``)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key, self.detail = key, " ".join(str(detail).split())
