"""Statistical agreement of talbuk and the Mesa reference on the same scenario.

Each implementation is run with several seeds; seed ``s`` starts both from the same synthetic
population, but their random draws differ (Philox streams against Mesa's ``model.random``),
so they can only agree in distribution. For each check (an output summed or averaged over a
window of years, or one year of it) the two samples of per-run values are compared with a
two-sample t-test with pooled variance (under the hypothesis that both implement the same
rules, both samples come from one distribution, so one variance), and the family of checks
is corrected for multiple testing by Bonferroni.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

#: (output, first year, last year, how): the default checks of the agreement test.
DEFAULT_CHECKS: tuple[tuple[str, int, int, str], ...] = (
    ("deaths", 1990, 2000, "sum"),
    ("excess_deaths", 1993, 2000, "sum"),
    ("trading_share", 1993, 2000, "mean"),
    ("pds_share", 1990, 2000, "mean"),
    ("hunger_mean", 1993, 2000, "mean"),
    ("expected_decisions", 1990, 2000, "sum"),
    ("arrivals_expected", 1990, 2000, "sum"),
)


def summarise(annual: pd.DataFrame, output: str, y0: int, y1: int, how: str) -> float:
    """One run's value of a check: ``output`` summed or averaged over years ``y0..y1``."""
    v = annual.loc[(annual["year"] >= y0) & (annual["year"] <= y1), output].to_numpy(float)
    if v.size == 0:
        raise ValueError(f"no years {y0}-{y1} in the run")
    return float(v.sum() if how == "sum" else v.mean())


@dataclasses.dataclass(frozen=True)
class CheckResult:
    name: str
    mean_a: float
    mean_b: float
    t: float
    p: float
    passed: bool


def pooled_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample t statistic with pooled variance, and its two-sided p-value."""
    from scipy import stats

    a = np.asarray(a, float)
    b = np.asarray(b, float)
    na, nb = a.size, b.size
    df = na + nb - 2
    sp2 = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / df
    se = math.sqrt(sp2 * (1.0 / na + 1.0 / nb))
    diff = a.mean() - b.mean()
    if se == 0.0:
        return (0.0, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / se
    return t, float(2.0 * stats.t.sf(abs(t), df))


def compare(runs_a: list[pd.DataFrame], runs_b: list[pd.DataFrame],
            checks=DEFAULT_CHECKS, alpha: float = 0.01) -> list[CheckResult]:
    """Every check, tested at family-wise level ``alpha`` (Bonferroni over the checks)."""
    out = []
    level = alpha / len(checks)
    for output, y0, y1, how in checks:
        a = np.array([summarise(r, output, y0, y1, how) for r in runs_a])
        b = np.array([summarise(r, output, y0, y1, how) for r in runs_b])
        t, p = pooled_t(a, b)
        years = f"{y0}" if y0 == y1 else f"{y0}-{y1}"
        label = f"{output} {years}" if y0 == y1 else f"{output} {how} {years}"
        out.append(CheckResult(label, float(a.mean()), float(b.mean()),
                               t, p, p >= level))
    return out


def report(results: list[CheckResult]) -> str:
    lines = [f"{'check':36s} {'mean A':>12s} {'mean B':>12s} {'t':>7s} {'p':>8s}"]
    for r in results:
        lines.append(f"{r.name:36s} {r.mean_a:12.4g} {r.mean_b:12.4g} {r.t:7.2f} {r.p:8.2g}"
                     f"{'' if r.passed else '  DIFFERENT'}")
    return "\n".join(lines)
