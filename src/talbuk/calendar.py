"""Months as integers: month index 0 is 1900-01. All dates in talbuk are whole months."""

from __future__ import annotations

import re

EPOCH_YEAR = 1900
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(text: str) -> int:
    """Parse ``"YYYY-MM"`` (or ``"YYYY"``, meaning January) into a month index since 1900-01.

    Raises ``ValueError`` with the expected format when the text is not a month.
    """
    text = str(text).strip()
    if re.fullmatch(r"\d{4}", text):
        text = f"{text}-01"
    m = _MONTH_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a month; expected 'YYYY-MM'")
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r}: month must be 01-12")
    return (year - EPOCH_YEAR) * 12 + (month - 1)


def format_month(index: int) -> str:
    """Inverse of :func:`parse_month`."""
    year, month0 = divmod(int(index), 12)
    return f"{year + EPOCH_YEAR:04d}-{month0 + 1:02d}"


def month_year(index: int) -> int:
    """Calendar year of a month index."""
    return int(index) // 12 + EPOCH_YEAR


def population_reference_year(year: int, kind: str) -> float:
    """When a figure of ``data/population.csv`` counts the population, as a fractional year.

    UN estimates are mid-year (1 July: ``year + 0.5``); the 1993 census counted the night of
    31 Dec 1993 (``1994.0``, the end of the year) and the 2008 census 1 Oct 2008 (``2008.75``,
    the end of September). Used to place the figures for the initial population and to
    compare them with the model's year-end populations (validation).
    """
    if kind == "census":
        return year + (1.0 if year == 1993 else 0.75)
    return year + 0.5


def population_reference_month(year: int, kind: str) -> str:
    """The month at whose end a figure of ``data/population.csv`` counts the population
    (:func:`population_reference_year`): ``"1993-12"``, ``"2008-09"``, ``"2010-06"``."""
    when = population_reference_year(year, kind)
    return format_month(round((when - EPOCH_YEAR) * 12) - 1)
