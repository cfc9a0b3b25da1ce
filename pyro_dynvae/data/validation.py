"""Argument checks shared by the data modules."""

from __future__ import annotations

import numpy as np


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` ``>= minimum``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
