"""Seed statistics the paper did not give: mean ± sd, and the paired t interval.

Seed k of a setting and seed k of the baseline form a pair (same initialisation stream,
same data order); d_k = setting_k - baseline_k; the interval is
mean(d) ± t_{0.975, n-1} · sd(d) / √n with n the number of pairs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class MeanSD:
  mean: float
  sd: float  # sample standard deviation (ddof=1); nan for one value.
  n: int


def mean_sd(values: Sequence[float]) -> MeanSD:
  x = np.asarray(values, np.float64)
  return MeanSD(float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan, len(x))


@dataclasses.dataclass(frozen=True)
class PairedDiff:
  mean: float       # mean over seeds of (setting - baseline).
  half_width: float  # t_{0.975, n-1} · sd / √n; nan with fewer than 2 pairs.
  n: int

  @property
  def low(self) -> float:
    return self.mean - self.half_width

  @property
  def high(self) -> float:
    return self.mean + self.half_width


def paired_difference(values: dict[int, float], baseline: dict[int, float],
                      confidence: float = 0.95) -> PairedDiff:
  """Mean of value[seed] - baseline[seed] over the seeds both have, with a t interval."""
  seeds = sorted(set(values) & set(baseline))
  if not seeds:
    return PairedDiff(math.nan, math.nan, 0)
  d = np.asarray([values[s] - baseline[s] for s in seeds], np.float64)
  n = len(d)
  if n < 2:
    return PairedDiff(float(d.mean()), math.nan, n)
  t = stats.t.ppf(0.5 + confidence / 2, n - 1)
  return PairedDiff(float(d.mean()), float(t * d.std(ddof=1) / math.sqrt(n)), n)
