"""Typed readers for settings taken from the environment.

Every setting is read here or in the settings modules, nowhere else, and a
malformed value stops the process at start-up instead of surfacing later.
"""

import os
from collections.abc import Callable
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Set the {name} environment variable.")
    return value


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false).")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def _env_float(name: str, default: float, *, what: str, valid: Callable[[float], bool], rule: str) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not {what}.") from None
    if not valid(value):
        raise ImproperlyConfigured(f"{name}={raw!r} must be {rule}.")
    return value


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds: a positive number, fractions allowed."""
    return _env_float(
        name,
        default,
        what="a number of seconds",
        valid=lambda value: 0 < value < float("inf"),
        rule="a positive number of seconds",
    )


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_fraction(name: str, default: float) -> float:
    """A number from 0 to 1 (a sampling rate)."""
    return _env_float(name, default, what="a number", valid=lambda value: 0 <= value <= 1, rule="from 0 to 1")


def env_origins(name: str) -> list[str]:
    """Web origins, comma-separated: a scheme (http, https), a host and an optional port, no path.

    A host may hold one `*` (`https://*.example.org`), as an S3 CORS rule allows.
    """
    found = []
    for item in env_list(name):
        origin = origin_of(item.removesuffix("/"))
        if not origin or origin != item.removesuffix("/") or "@" in origin or item.count("*") > 1:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an origin such as https://lubdub.example.org"
                " (scheme, host and port only)."
            )
        found.append(origin)
    return found


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of an http(s) URL; "" for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"
