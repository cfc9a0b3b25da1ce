"""Argument checks shared by modules that must not import each other (the data and metrics
modules, the command lines of training and of the study)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``.

    :param value: the argument to check.
    :param str name: the argument's name, for the error message.
    :param int minimum: the smallest allowed value.
    :raises TypeError: if ``value`` is not an integer (``bool`` is rejected).
    :raises ValueError: if ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_generator(value: Any, name: str = "rng") -> np.random.Generator:
    """A :class:`numpy.random.Generator` from a generator, an integer seed or ``None``.

    :param value: the generator, seed or ``None`` (fresh entropy).
    :param str name: the argument's name, for the error message.
    :raises TypeError: for anything else.
    """
    if isinstance(value, np.random.Generator):
        return value
    if value is None or isinstance(value, (int, np.integer)):
        return np.random.default_rng(value)
    raise TypeError(
        f"{name} must be a numpy.random.Generator, an int seed or None, "
        f"got {type(value).__name__}"
    )


def check_nonnegative_float(value: Any, name: str) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number ``>= 0``.

    :param value: the argument to check.
    :param str name: the argument's name, for the error message.
    :raises TypeError: if ``value`` is not a real number (``bool`` is rejected).
    :raises ValueError: if ``value`` is negative, infinite or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def json_object(text: str) -> dict:
    """``argparse`` type of an option that takes a JSON object, e.g. ``'{"kl_scale": 0.5}'``.

    :raises argparse.ArgumentTypeError: if ``text`` is not valid JSON or not an object.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value
