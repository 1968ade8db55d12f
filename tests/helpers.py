"""Helpers shared by the tests."""

from __future__ import annotations

from talbuk.calendar import parse_month
from talbuk.scenario import load_scenario


def scenario_file(tmp_path, body: str, name: str = "t"):
    """A scenario extending the baseline with ``body`` (TOML), loaded."""
    f = tmp_path / f"{name}.toml"
    f.write_text(f'extends = "baseline"\nname = "{name}"\n' + body)
    return load_scenario(f)


def months_to(year: int) -> int:
    """Months from 1990-01 to the end of ``year``."""
    return parse_month(f"{year}-12") - parse_month("1990-01") + 1
