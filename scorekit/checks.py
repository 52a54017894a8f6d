"""Argument checks shared by every public entry point; torch-free, so the sampler registry and the command line can
check their flags with them before importing torch (``scorekit --help`` and argument errors stay fast);
:mod:`scorekit.utils` re-exports them for the library."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

PROBES = ("rademacher", "gaussian")  # Hutchinson probes of scorekit.likelihood (here: the CLI offers them torch-free)


def check_choice(name: str, value: Any, choices: Iterable[str] | Mapping[str, Any]) -> None:
    """Raise a ValueError naming the argument when ``value`` is not one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {sorted(choices)}")


def check_positive(name: str, value: float, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise a ValueError naming the argument when ``value`` is not a positive (or non-negative) number."""
    kind = "integer" if integer else "number"
    if integer and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ValueError(f"{name} must be an integer >= {0 if allow_zero else 1}, got {value!r}")
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite {kind}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """The one validator of counts (``batch_size``, ``num_images``, ``--nrow``, ...): an integer >= ``minimum``.

    ``name`` is what the user typed (an argument name, or a CLI flag such as ``--num-samples``). Returns the value
    as an ``int``; raises a ValueError naming ``name``, the value given and what is accepted.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> None:
    """Raise a TypeError naming the argument when ``value`` is not a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
