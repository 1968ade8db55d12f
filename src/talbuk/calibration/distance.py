"""The distance between a run's summary statistics and the record (used by ``talbuk calibrate``).

.. math::

    D = \\sqrt{ \\frac{1}{|Y|} \\sum_{y \\in Y} \\left(\\ln\\frac{x_y + c}{o_y + c}\\right)^2
               + \\sum_k w_k\\, r_k^2 }

* ``x_y`` are simulated arrivals (``arrivals_expected``) and ``o_y`` the record in year ``y`` of
  the fit years ``Y`` (default 1995-2019); on the log scale a factor of 2 costs the same in 1996
  (56 arrivals) as in 2009 (2,914). ``c = 10`` people (set by hand) keeps a year with almost no
  simulated arrivals finite.
* ``r_k`` is a range target's miss: 0 inside ``[low, high]``, ``(low - x) / low`` below it and
  ``(x - high) / high`` above it (the relative distance to the nearest end); a summary that is
  undefined in a run (NaN: no sampled arrival that year) counts as ``r = 1``.
* ``w_k = 0.25`` for every range target (set by hand): the arrivals record is the main target,
  and missing a range by 100% costs as much as arrivals off by a factor ``e^{0.5} = 1.65`` in
  every year.

The first term alone is the root mean squared log error of arrivals, so ``D`` is in units of
"log factor": ``D = 0.69`` is arrivals off by a factor of 2 on average, with every range target
met. Only the core dependencies are needed (no pyabc).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from talbuk.calibration.summaries import (
    DEFAULT_FIT_YEARS,
    arrival_key,
    arrivals_record,
    range_targets,
)

#: people added to simulated and recorded arrivals before taking logs (set by hand)
LOG_OFFSET = 10.0
#: weight of each range target's squared miss (set by hand; see the module docstring)
RANGE_WEIGHT = 0.25
#: miss counted for a summary that is undefined in a run (set by hand)
NAN_MISS = 1.0


def range_miss(x: float, low: float, high: float) -> float:
    """0 inside ``[low, high]``, the relative distance to the nearest end outside, 1 for NaN."""
    if x is None or not math.isfinite(x):
        return NAN_MISS
    if x < low:
        return (low - x) / low if low > 0 else float(low - x)
    if x > high:
        return (x - high) / high if high > 0 else float(x - high)
    return 0.0


@dataclass
class TalbukDistance:
    """``D`` of the module docstring; callable as ``distance(x, x_0)`` (pyabc's signature).

    The record and the ranges are held by the object (read from the shipped data), so ``x_0``
    is not used: pyabc still stores it with the history.
    """

    years: tuple[int, int] = DEFAULT_FIT_YEARS
    range_weight: float = RANGE_WEIGHT
    log_offset: float = LOG_OFFSET
    record: dict[int, float] = field(default_factory=arrivals_record)
    targets: list = field(default_factory=range_targets)

    @property
    def fit_years(self) -> list[int]:
        return list(range(self.years[0], self.years[1] + 1))

    def components(self, x: dict) -> dict[str, float]:
        """The arrivals term (root mean squared log error) and each range target's miss."""
        errs = []
        for y in self.fit_years:
            sim = float(x.get(arrival_key(y), float("nan")))
            if not math.isfinite(sim) or sim < 0:
                errs.append(10.0)  # a broken run: very far (set by hand)
                continue
            errs.append(math.log((sim + self.log_offset) / (self.record[y] + self.log_offset)))
        out = {"arrivals_rmsle": math.sqrt(sum(e * e for e in errs) / len(errs))}
        for t in self.targets:
            out[t.key] = range_miss(float(x.get(t.key, float("nan"))), t.low, t.high)
        return out

    def __call__(self, x: dict, x_0: dict | None = None, *args, **kwargs) -> float:
        c = self.components(x)
        total = c.pop("arrivals_rmsle") ** 2 + self.range_weight * sum(v * v for v in c.values())
        return math.sqrt(total)

    def config(self) -> dict:
        """What the distance is, for the calibration summary."""
        return {"arrival_years": list(self.years), "log_offset": self.log_offset,
                "range_weight": self.range_weight, "nan_miss": NAN_MISS,
                "range_targets": {t.key: [t.low, t.high] for t in self.targets}}
