"""Thread- and task-local settings chosen with a ``with`` block (``contextvars``)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

__all__ = ["setting"]


@contextlib.contextmanager
def setting(
    variable: contextvars.ContextVar, value: str, choices: Sequence[str], name: str
) -> Iterator[None]:
    """Set ``variable`` to ``value`` inside the block, restoring it after.

    :raises ValueError: naming ``name`` when ``value`` is not one of ``choices``.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)
