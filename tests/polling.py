"""Waiting for something another process does: the suite's one polling loop."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    check: Callable[[], T],
    timeout: float = 60,
    *,
    interval: float = 0.1,
    ignoring: tuple[type[Exception], ...] = (),
    message: str | Callable[[], str] = "",
) -> T:
    """Call ``check`` every ``interval`` seconds until it returns a true value,
    and return that value.

    An exception in ``ignoring`` counts as "not yet" (a server still starting);
    any other propagates at once, so a check may raise to give up early (a
    worker that exited). After ``timeout`` seconds: TimeoutError with
    ``message`` (a callable is called then, e.g. to include a log's tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except ignoring:
            result = None  # type: ignore[assignment]
        if result:
            return result
        if time.monotonic() >= deadline:
            said = message() if callable(message) else message
            raise TimeoutError(f"after {timeout:g}s: {said or 'the condition was not met'}")
        time.sleep(interval)
