"""Helpers shared by the tests."""

from __future__ import annotations

from talbuk.calendar import parse_month
from talbuk.scenario import load_scenario

#: Seconds a test waits for a run that may be the first of its pytest worker: with numba's
#: cache empty (a clean clone) that run compiles every kernel first, minutes on a slow 2-core
#: machine shared with the other worker. A bound on waiting, not a speed requirement.
COLD_WAIT = 600


def scenario_file(tmp_path, body: str, name: str = "t"):
    """A scenario extending the baseline with ``body`` (TOML), loaded."""
    f = tmp_path / f"{name}.toml"
    f.write_text(f'extends = "baseline"\nname = "{name}"\n' + body)
    return load_scenario(f)


def months_to(year: int) -> int:
    """Months from 1990-01 to the end of ``year``."""
    return parse_month(f"{year}-12") - parse_month("1990-01") + 1
