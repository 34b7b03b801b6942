"""Checks of the networks' constructor options, shared so that all three reject bad values alike.

Each raises ValueError naming the option, the value given and what is allowed, before any
tracing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_choice(option: str, value: Any, choices: Iterable[str]) -> None:
  choices = tuple(choices)
  if value not in choices:
    raise ValueError(f"{option} must be one of {choices}, got {value!r}.")


def check_width(width: float) -> None:
  if not width > 0:
    raise ValueError(f"width must be > 0, got {width!r}.")


def check_fraction(option: str, value: float) -> None:
  """value in [0, 1): dropout rates, BatchNorm momentum."""
  if not 0 <= value < 1:
    raise ValueError(f"{option} must be in [0, 1), got {value!r}.")


def scaled_channels(channels: int, width: float) -> int:
  """A layer's channels under the `width` multiplier: max(1, round(channels * width))."""
  return max(1, round(channels * width))
