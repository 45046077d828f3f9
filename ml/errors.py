"""Domain errors raised by the ml package.

Every error type subclasses ``ValueError`` so callers that only care about "bad
input" can catch one thing, while workers can store ``AudioError.code`` as the
machine-readable reason a recording failed.
"""

from __future__ import annotations

NOT_AUDIO = "not_audio"
UNDECODABLE = "undecodable"
EMPTY = "empty"
TRUNCATED = "truncated"
TOO_SHORT = "too_short"
SILENT = "silent"
UNSUPPORTED_RATE = "unsupported_rate"

AUDIO_ERROR_CODES = frozenset({NOT_AUDIO, UNDECODABLE, EMPTY, TRUNCATED, TOO_SHORT, SILENT, UNSUPPORTED_RATE})


class AudioError(ValueError):
    """A recording that cannot be analysed; ``code`` is one of ``AUDIO_ERROR_CODES``."""

    def __init__(self, code: str, message: str) -> None:
        if code not in AUDIO_ERROR_CODES:
            raise ValueError(f"unknown audio error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BundleError(ValueError):
    """A model bundle that is malformed, tampered with or incompatible with this code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FeatureError(ValueError):
    """Feature settings that describe no valid features, or an input features cannot be computed from."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
