"""Scenarios: loading, timeline modes, extension, round trips and errors."""

from __future__ import annotations

import csv
import pickle
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talbuk.calendar import format_month, parse_month
from talbuk.scenario import (
    DECISION_RULES,
    LEVERS,
    Point,
    Scenario,
    ScenarioError,
    builtin_scenarios,
    load_scenario,
    scenario_from_toml,
)

EXPECTED_LEVERS = {
    "food_index": ("linear", 0, 2),
    "pds_grams": ("linear", 0, 900),
    "market_tolerance": ("step", 0, 1),
    "exchange_rate": ("linear", 0.1, 100000),
    "redenomination": ("pulse", 0, 1),
    "media_supply": ("linear", 0, 1),
    "media_crackdown": ("step", 0, 1),
    "border_security": ("step", 0, 1),
    "punishment_severity": ("step", 0, 1),
    "china_repatriation": ("step", 0, 1),
    "broker_fee_usd": ("linear", 0, 200000),
    "onward_route": ("step", 0, 1),
    "airlift": ("pulse", 0, 100000),
    "trade_with_china": ("linear", 0, 2),
}
BUILTINS = [
    "baseline",
    "no-famine",
    "no-foreign-media",
    "no-markets",
    "open-border",
    "no-2012-crackdown",
    "no-covid-closure",
]
M1990 = parse_month("1990-01")
N = parse_month("2025-12") - M1990 + 1
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def m(text: str) -> int:
    """Index into a 1990-01.. series."""
    return parse_month(text) - M1990


@pytest.fixture(scope="module")
def baseline() -> Scenario:
    return load_scenario("baseline")


@pytest.fixture(scope="module")
def base_series(baseline) -> dict[str, np.ndarray]:
    return baseline.lever_series(M1990, N)


def full_text(extra: str = "", skip: tuple[str, ...] = (), header: str = "") -> str:
    """A complete stand-alone scenario: one point per required lever, plus ``extra``."""
    lines = [header or 'name = "t"\ndescription = "test"']
    for lever, spec in LEVERS.items():
        if spec.mode == "pulse" or lever in skip:
            continue
        lines.append(f'[timeline.{lever}]\npoints = [{{ date = "1990-01", value = {spec.low} }}]')
    return "\n".join(lines) + "\n" + extra


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def child(tmp: Path, body: str, name: str = "child.toml") -> Path:
    return write(tmp, name, f'extends = "baseline"\n{body}')


def expect_error(path, key: str | None = None, problem: str | None = None, file=None):
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert err.file == str(file if file is not None else path)
    if key is not None:
        assert err.key == key, str(err)
    if problem is not None:
        assert problem in err.problem, str(err)
    assert str(err) == f"{err.file}: {err.key}: {err.problem}"
    assert "\n" not in str(err)
    return err


# ---------------------------------------------------------------------------------------------
# levers and built-ins


def test_lever_registry():
    assert set(LEVERS) == set(EXPECTED_LEVERS)
    for name, (mode, low, high) in EXPECTED_LEVERS.items():
        spec = LEVERS[name]
        assert spec.name == name
        assert (spec.mode, spec.low, spec.high) == (mode, low, high)
        assert spec.unit and spec.description
        if mode == "pulse":
            assert spec.default == 0


def test_builtin_list():
    found = builtin_scenarios()
    assert list(found) == sorted(found)
    assert set(BUILTINS) <= set(found)
    assert all(desc for desc in found.values())


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_loads(name):
    s = load_scenario(name)
    assert s.name == name
    assert s.description == builtin_scenarios()[name]
    assert s.extends == (None if name == "baseline" else "baseline")
    assert (s.start, s.end, s.n_months) == ("1990-01", "2025-12", N)
    assert s.decision_rule in DECISION_RULES
    for lever, spec in LEVERS.items():
        pts = s.timeline.get(lever, ())
        assert pts or spec.mode == "pulse"
        months = [p.month for p in pts]
        assert months == sorted(set(months))
        for p in pts:
            assert spec.low <= p.value <= spec.high
            assert p.source.strip(), (lever, p)
    series = s.lever_series(s.start_month, s.n_months)
    assert set(series) == set(LEVERS)
    for lever, values in series.items():
        assert values.dtype == np.float64 and values.shape == (N,)
        assert np.all(np.isfinite(values))
        assert np.all((values >= LEVERS[lever].low) & (values <= LEVERS[lever].high))
    from talbuk.modules import MODULE_CLASSES

    assert set(s.params) == set(MODULE_CLASSES)
    for module, cls in MODULE_CLASSES.items():
        assert isinstance(s.params[module], cls.Params)


def test_baseline_sources_name_a_row_or_an_assumption(baseline):
    named = ("events.csv", "pds_rations.csv", "broker_fees.csv", "targets.csv")
    for lever, pts in baseline.timeline.items():
        for p in pts:
            assert any(n in p.source for n in named) or p.source.startswith("assumption"), (
                lever,
                p,
            )


def _data_rows(name: str) -> list[dict[str, str]]:
    text = files("talbuk").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _period_months(period: str) -> tuple[int, int]:
    """First and last month of a period written "YYYY", "YYYY-MM" or "YYYY-YYYY"."""
    if len(period) == 7:
        return parse_month(period), parse_month(period)
    first, _, last = period.partition("-")
    return parse_month(f"{first}-01"), parse_month(f"{last or first}-12")


def test_pds_grams_follow_the_data(baseline):
    got = {p.date: p.value for p in baseline.timeline["pds_grams"]}
    want = {}
    for row in _data_rows("pds_rations.csv"):
        period = row["period"]
        date = f"{period}-07" if len(period) == 4 else period
        want[date] = float(row["grams_per_person_per_day"])
    assert got == want


def test_broker_fees_follow_the_data(baseline):
    got = {p.date: p.value for p in baseline.timeline["broker_fee_usd"]}
    for row in _data_rows("broker_fees.csv"):
        lo, hi = _period_months(row["period"])
        date = format_month((lo + hi) // 2)
        expected = (float(row["usd_low"]) + float(row["usd_high"])) / 2
        if row["period"] == "2010":  # the price of the Tumen crossing alone, so the whole fee
            assert "crossing" in row["what"]  # adds the onward leg (2011 row: about 2,500)
            expected += 2500.0
        assert got[date] == expected, row
    early = baseline.lever_series(M1990, 60)["broker_fee_usd"]
    assert np.all(early <= 50)  # 1990-94 near 0


def test_baseline_shape(base_series):
    s = base_series
    # famine: food lowest in 1996-97
    low = int(np.argmin(s["food_index"]))
    assert "1996-01" <= format_month(M1990 + low) <= "1997-12"
    assert s["redenomination"].sum() == 1 and s["redenomination"][m("2009-12")] == 1
    # redenomination: new won = old won / 100
    assert s["exchange_rate"][m("2009-11")] / s["exchange_rate"][m("2009-12")] == pytest.approx(100)
    assert s["border_security"][m("2020-01")] >= 0.97
    assert s["border_security"][m("2019-12")] < s["border_security"][m("2020-01")]
    assert np.all(s["border_security"][: m("2000-01")] == s["border_security"][0])
    assert s["trade_with_china"][m("2021-01")] < 0.1
    assert s["media_crackdown"][m("2004-01")] > s["media_crackdown"][m("2003-12")]
    assert s["media_crackdown"][m("2012-01")] > s["media_crackdown"][m("2011-12")]


# ---------------------------------------------------------------------------------------------
# counterfactuals do what their descriptions say


def _same_except(a, b, levers):
    for lever in LEVERS:
        if lever not in levers:
            np.testing.assert_array_equal(a[lever], b[lever], err_msg=lever)


def test_no_famine(base_series):
    s = load_scenario("no-famine").lever_series(M1990, N)
    _same_except(s, base_series, {"food_index", "pds_grams"})
    f, b = s["food_index"], base_series["food_index"]
    start = b[m("1990-01")]
    assert np.all(f[: m("1998-12") + 1] == start)
    assert b[m("1997-06")] < start  # the baseline does fall
    # from 1999 the supply drifts to the baseline's 2005-12 level, then follows history
    assert np.all(np.diff(f[m("1998-12") : m("2005-11") + 1]) < 0)
    np.testing.assert_allclose(f[m("2005-12") :], b[m("2005-12") :], rtol=1e-12)
    # rations: the pre-crisis cuts are kept, the famine's collapse is not
    r, rb = s["pds_grams"], base_series["pds_grams"]
    np.testing.assert_array_equal(r[: m("1994-07") + 1], rb[: m("1994-07") + 1])
    assert np.all(r[m("1994-07") : m("1998-12") + 1] == 400.0)
    assert rb[m("1997-07")] == 128.0
    np.testing.assert_allclose(r[m("2002-07") :], rb[m("2002-07") :], rtol=1e-12)


def test_no_foreign_media(base_series):
    s = load_scenario("no-foreign-media").lever_series(M1990, N)
    _same_except(s, base_series, {"media_supply"})
    assert np.all(s["media_supply"] == 0)


def test_no_markets(base_series):
    s = load_scenario("no-markets").lever_series(M1990, N)
    _same_except(s, base_series, {"market_tolerance"})
    assert np.all(s["market_tolerance"] == base_series["market_tolerance"][0])


def test_open_border(base_series):
    s = load_scenario("open-border").lever_series(M1990, N)
    _same_except(s, base_series, {"border_security"})
    assert np.all(s["border_security"] == base_series["border_security"][m("1999-12")])


def test_no_2012_crackdown(base_series):
    s = load_scenario("no-2012-crackdown").lever_series(M1990, N)
    levers = {"border_security", "media_crackdown", "onward_route"}
    _same_except(s, base_series, levers)
    for lever in levers:
        x, b = s[lever], base_series[lever]
        np.testing.assert_array_equal(x[: m("2012-01")], b[: m("2012-01")])
        assert np.all(x[m("2012-01") : m("2019-12") + 1] == b[m("2011-12")])
        np.testing.assert_allclose(x[m("2020-01") :], b[m("2020-01") :], rtol=1e-12)


def test_no_covid_closure(base_series):
    s = load_scenario("no-covid-closure").lever_series(M1990, N)
    levers = {"border_security", "trade_with_china", "onward_route"}
    _same_except(s, base_series, levers)
    for lever in levers:
        x, b = s[lever], base_series[lever]
        np.testing.assert_array_equal(x[: m("2020-01")], b[: m("2020-01")])
        assert np.all(x[m("2020-01") : m("2023-12") + 1] == b[m("2019-12")]), lever
        np.testing.assert_allclose(x[m("2024-01") :], b[m("2024-01") :], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# timeline modes


def test_step_mode(tmp_path):
    body = """
[timeline.border_security]
points = [
  { date = "2000-03", value = 0.2 },
  { date = "2000-06", value = 0.8 },
]
"""
    path = write(tmp_path, "full.toml", full_text(skip=("border_security",), extra=body))
    s = load_scenario(path)
    v = s.lever_series(parse_month("2000-01"), 8)["border_security"]
    # before the first point: the first value; then each value holds until the next point
    assert v.tolist() == [0.2, 0.2, 0.2, 0.2, 0.2, 0.8, 0.8, 0.8]
    assert s.lever_value("border_security", parse_month("2099-12")) == 0.8
    # the same points in a child of the baseline: the parent's value holds before them
    s = load_scenario(child(tmp_path, body + 'replace_until = "2099-12"\n'))
    v = s.lever_series(parse_month("2000-01"), 8)["border_security"]
    assert v.tolist() == [0.15, 0.15, 0.2, 0.2, 0.2, 0.8, 0.8, 0.8]


def test_linear_mode(tmp_path):
    body = """
[timeline.food_index]
points = [
  { date = "2000-01", value = 1.0 },
  { date = "2000-05", value = 0.6 },
]
"""
    path = write(tmp_path, "full.toml", full_text(skip=("food_index",), extra=body))
    v = load_scenario(path).lever_series(parse_month("1999-11"), 9)["food_index"]
    np.testing.assert_allclose(v, [1.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.6])
    # in a child, the ramp runs from the parent's previous point into the first child point
    b = load_scenario("baseline")
    s = load_scenario(child(tmp_path, body))
    before = b.lever_value("food_index", parse_month("1998-12"))
    got = s.lever_series(parse_month("1998-12"), 15)["food_index"]
    assert got[0] == before
    np.testing.assert_allclose(got[13:], [1.0, 0.9])  # 2000-01, 2000-02
    assert np.all(np.diff(got[:14]) > 0)


def test_pulse_mode(tmp_path):
    text = full_text(
        extra="""
[timeline.redenomination]
points = [{ date = "2001-02", value = 1.0 }, { date = "2001-04", value = 0.5 }]
"""
    )
    s = load_scenario(write(tmp_path, "p.toml", text))
    v = s.lever_series(parse_month("2001-01"), 5)["redenomination"]
    assert v.tolist() == [0.0, 1.0, 0.0, 0.5, 0.0]
    # a pulse lever may be left out: it is 0 everywhere
    s = load_scenario(write(tmp_path, "q.toml", full_text()))
    assert "redenomination" not in s.timeline
    assert np.all(s.lever_series(M1990, 24)["redenomination"] == 0)


def test_series_window_and_defaults(baseline):
    whole = baseline.lever_series()
    assert all(v.shape == (N,) for v in whole.values())
    part = baseline.lever_series(parse_month("2009-12"), 1)
    assert part["redenomination"].tolist() == [1.0]
    assert part["exchange_rate"].tolist() == [40.0]


# ---------------------------------------------------------------------------------------------
# extension


def test_extends_splices_and_resumes(tmp_path):
    parent = full_text(
        skip=("border_security",),
        header='name = "parent"\ndescription = "p"\nstart = "1995-01"\ndecision_rule = "utility"',
        extra="""
[timeline.border_security]
points = [
  { date = "1990-01", value = 0.1, source = "a" },
  { date = "1995-01", value = 0.2, source = "b" },
  { date = "2000-01", value = 0.3, source = "c" },
  { date = "2005-01", value = 0.4, source = "d" },
  { date = "2010-01", value = 0.5, source = "e" },
]
""",
    )
    write(tmp_path, "parent.toml", parent)
    sub = tmp_path / "sub"
    sub.mkdir()
    kid = write(
        sub,
        "kid.toml",
        """extends = "../parent.toml"
end = "2020-12"
[timeline.border_security]
points = [{ date = "1996-01", value = 0.9 }, { date = "1999-01", value = 0.8 }]
""",
    )
    s = load_scenario(kid)
    assert (s.name, s.extends, s.start, s.end, s.decision_rule) == (
        "kid",
        "parent",
        "1995-01",
        "2020-12",
        "utility",
    )
    got = [(p.date, p.value) for p in s.timeline["border_security"]]
    # window 1996-01..1999-01: no parent point inside; all parent points stay
    assert got == [
        ("1990-01", 0.1),
        ("1995-01", 0.2),
        ("1996-01", 0.9),
        ("1999-01", 0.8),
        ("2000-01", 0.3),
        ("2005-01", 0.4),
        ("2010-01", 0.5),
    ]
    # replace_until widens the window; history resumes the month after it
    write(
        sub,
        "kid2.toml",
        """extends = "../parent.toml"
[timeline.border_security]
points = [{ date = "1995-01", value = 0.9 }]
replace_until = "2007-12"
""",
    )
    s2 = load_scenario(sub / "kid2.toml")
    got = [(p.date, p.value) for p in s2.timeline["border_security"]]
    assert got == [("1990-01", 0.1), ("1995-01", 0.9), ("2008-01", 0.4), ("2010-01", 0.5)]
    v = s2.lever_series(parse_month("2007-11"), 3)["border_security"]
    assert v.tolist() == [0.9, 0.9, 0.4]
    # a grandchild inherits the spliced timeline
    write(sub, "grand.toml", 'extends = "kid2.toml"\ndescription = "g"\n')
    g = load_scenario(sub / "grand.toml")
    assert g.timeline == s2.timeline and g.extends == "kid2"


def test_extends_without_replace_until_keeps_parent_after(tmp_path, baseline):
    s = load_scenario(
        child(
            tmp_path,
            """[timeline.border_security]
points = [{ date = "2012-01", value = 0.5 }]
""",
        )
    )
    b = {p.date: p.value for p in baseline.timeline["border_security"]}
    got = {p.date: p.value for p in s.timeline["border_security"]}
    assert got == {**b, "2012-01": 0.5}


def _numeric_fields():
    """(module, field, default, other valid value) for numeric params of registered modules."""
    from talbuk.modules import MODULE_CLASSES

    out = []
    for module, cls in MODULE_CLASSES.items():
        base = cls.Params()
        for fname in cls.Params.model_fields:
            value = getattr(base, fname)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            for alt in (value * 0.99, value * 1.01, value + 1, value - 1):
                alt = type(value)(alt)
                if alt == value:
                    continue
                try:
                    cls.Params(**{fname: alt})
                except Exception:
                    continue
                out.append((module, fname, value, alt))
                break
    return out


def _bounded_field():
    """(module, field, too-large value) for a param with an upper bound, if any."""
    from annotated_types import Le, Lt

    from talbuk.modules import MODULE_CLASSES

    for module, cls in MODULE_CLASSES.items():
        for fname, info in cls.Params.model_fields.items():
            for meta in info.metadata:
                if isinstance(meta, Le | Lt):
                    bound = meta.le if isinstance(meta, Le) else meta.lt
                    bad = bound + abs(bound) + 1
                    default = getattr(cls.Params(), fname)
                    return (
                        module,
                        fname,
                        type(default)(bad) if isinstance(default, int) else float(bad),
                    )
    return None


def test_params_merge_key_by_key(tmp_path):
    fields = _numeric_fields()
    if len(fields) < 2:
        pytest.skip("needs two numeric module params")
    (m1, f1, d1, a1), (m2, f2, d2, a2) = fields[:2]
    p = write(tmp_path, "p.toml", f'extends = "baseline"\n[params.{m1}]\n{f1} = {a1!r}\n')
    write(tmp_path, "c.toml", f'extends = "p.toml"\n[params.{m2}]\n{f2} = {a2!r}\n')
    parent = load_scenario(p)
    kid = load_scenario(tmp_path / "c.toml")
    assert getattr(parent.params[m1], f1) == a1
    assert getattr(kid.params[m1], f1) == a1  # inherited
    assert getattr(kid.params[m2], f2) == a2  # overridden
    if (m1, f1) != (m2, f2):
        assert getattr(parent.params[m2], f2) == d2


# ---------------------------------------------------------------------------------------------
# round trip and hash


@pytest.mark.parametrize("name", BUILTINS)
def test_to_toml_round_trip(name, tmp_path):
    s = load_scenario(name)
    text = s.to_toml()
    assert "extends" not in text.split("[", 1)[0]
    again = load_scenario(write(tmp_path, "resolved.toml", text))
    assert again == s
    assert again.extends is None
    assert again.to_toml() == text
    assert again.hash() == s.hash() == load_scenario(name).hash()
    assert len(s.hash()) == 64 and int(s.hash(), 16) >= 0
    assert scenario_from_toml(text) == s


def test_hash_distinguishes_scenarios():
    hashes = {load_scenario(n).hash() for n in BUILTINS}
    assert len(hashes) == len(BUILTINS)


def test_round_trip_with_odd_text(tmp_path):
    text = full_text(
        header='name = "odd"\ndescription = "quote \\" backslash \\\\ tab \\t é 한국 \\u007f"'
    )
    s = load_scenario(write(tmp_path, "odd.toml", text))
    again = load_scenario(write(tmp_path, "again.toml", s.to_toml()))
    assert again == s and again.description == s.description


# ---------------------------------------------------------------------------------------------
# errors


def test_error_format_and_pickle():
    err = ScenarioError("f.toml", "timeline.x", "bad\nthing")
    assert str(err) == "f.toml: timeline.x: bad thing"
    back = pickle.loads(pickle.dumps(err))
    assert (back.file, back.key, back.problem) == (err.file, err.key, err.problem)


LEVER_ERRORS = [
    # (points body, key, problem)
    ('{ date = "1990-01", value = 1.5 }', "timeline.border_security.points[0].value", "outside"),
    ('{ date = "1990-01", value = -0.1 }', "timeline.border_security.points[0].value", "outside"),
    ('{ date = "1990-01", value = nan }', "timeline.border_security.points[0].value", "outside"),
    ('{ date = "1990-01", value = "high" }', "timeline.border_security.points[0].value", "number"),
    ('{ date = "1990-01", value = true }', "timeline.border_security.points[0].value", "number"),
    ('{ date = "1990-13", value = 0.1 }', "timeline.border_security.points[0].date", "date"),
    ('{ date = "1990/01", value = 0.1 }', "timeline.border_security.points[0].date", "date"),
    ("{ date = 1990-01-01, value = 0.1 }", "timeline.border_security.points[0].date", "YYYY-MM"),
    ("{ date = 1990, value = 0.1 }", "timeline.border_security.points[0].date", "YYYY-MM"),
    ("{ value = 0.1 }", "timeline.border_security.points[0].date", "missing"),
    ('{ date = "1990-01" }', "timeline.border_security.points[0].value", "missing"),
    (
        '{ date = "1990-01", value = 0.1, note = "x" }',
        "timeline.border_security.points[0].note",
        "unknown key",
    ),
    (
        '{ date = "1990-01", value = 0.1, source = 3 }',
        "timeline.border_security.points[0].source",
        "string",
    ),
    (
        '{ date = "2000-01", value = 0.1 }, { date = "1999-01", value = 0.1 }',
        "timeline.border_security.points[1].date",
        "dates out of order",
    ),
    (
        '{ date = "2000-01", value = 0.1 }, { date = "2000-01", value = 0.2 }',
        "timeline.border_security.points[1].date",
        "duplicate date",
    ),
    ("3", "timeline.border_security.points[0]", "table"),
    ("", "timeline.border_security.points", "at least one point"),
]


@pytest.mark.parametrize("points,key,problem", LEVER_ERRORS)
def test_lever_errors(tmp_path, points, key, problem):
    path = child(tmp_path, f"[timeline.border_security]\npoints = [{points}]\n")
    expect_error(path, key, problem)


def test_exchange_rate_range(tmp_path):
    for value, ok in ((0.1, True), (100000, True), (0.05, False), (100001, False)):
        path = child(
            tmp_path,
            f'[timeline.exchange_rate]\npoints = [{{ date = "2000-01", value = {value} }}]\n',
        )
        if ok:
            load_scenario(path)
        else:
            expect_error(path, "timeline.exchange_rate.points[0].value", "outside")


TOP_ERRORS = [
    # (text after extends = "baseline", key, problem)
    ("name = \n", "line 2", "invalid TOML"),
    ("nmae = 'x'\n", "nmae", "unknown key"),
    ("name = 3\n", "name", "string"),
    ("description = ['x']\n", "description", "string"),
    ('start = "1990-1"\n', "start", "date"),
    ('end = "2025-00"\n', "end", "date"),
    ('start = "2000-01"\nend = "1999-12"\n', "end", "before start"),
    ('decision_rule = "vote"\n', "decision_rule", "threshold, utility, planned"),
    ("timeline = 3\n", "timeline", "table"),
    ("[timeline.border]\npoints = []\n", "timeline.border", "unknown lever"),
    ("[timeline]\nborder_security = 0.5\n", "timeline.border_security", "table"),
    ("[timeline.border_security]\nvalue = 0.5\n", "timeline.border_security.value", "unknown key"),
    (
        "[timeline.border_security]\nreplace_until = '2000-01'\n",
        "timeline.border_security.points",
        "missing",
    ),
    ("[timeline.border_security]\npoints = 0.5\n", "timeline.border_security.points", "array"),
    (
        "[timeline.border_security]\npoints = [{ date = '2000-01', value = 0.5 }]\nreplace_until = '1999-12'\n",
        "timeline.border_security.replace_until",
        "before",
    ),
    (
        "[timeline.border_security]\npoints = [{ date = '2000-01', value = 0.5 }]\nreplace_until = 'soon'\n",
        "timeline.border_security.replace_until",
        "date",
    ),
    ("params = 1\n", "params", "table"),
    ("[params.economyy]\nx = 1\n", "params.economyy", "unknown module"),
    ("[params]\ndemography = 1\n", "params.demography", "table"),
    ("[params.demography]\nno_such_param = 1\n", "params.demography.no_such_param", "unknown key"),
    ("extends2 = 'x'\n", "extends2", "unknown key"),
]


@pytest.mark.parametrize("body,key,problem", TOP_ERRORS)
def test_top_level_errors(tmp_path, body, key, problem):
    expect_error(child(tmp_path, body), key, problem)


def test_param_type_and_bound_errors(tmp_path):
    fields = _numeric_fields()
    if not fields:
        pytest.skip("no numeric module params registered")
    module, fname, _, _ = fields[0]
    path = child(tmp_path, f'[params.{module}]\n{fname} = "70"\n')
    expect_error(path, f"params.{module}.{fname}", "valid")
    bounded = _bounded_field()
    if bounded is None:
        pytest.skip("no bounded module params registered")
    module, fname, bad = bounded
    path = child(tmp_path, f"[params.{module}]\n{fname} = {bad!r}\n", name="b.toml")
    expect_error(path, f"params.{module}.{fname}", "less than")


def test_missing_lever_in_standalone(tmp_path):
    path = write(tmp_path, "s.toml", full_text(skip=("onward_route",)))
    expect_error(path, "timeline.onward_route", "missing")


def test_replace_until_needs_extends(tmp_path):
    text = full_text(
        skip=("border_security",),
        extra="""
[timeline.border_security]
points = [{ date = "1990-01", value = 0.1 }]
replace_until = "2000-01"
""",
    )
    expect_error(
        write(tmp_path, "s.toml", text), "timeline.border_security.replace_until", "extends"
    )


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    expect_error(path, "(file)", "not found")
    expect_error(str(path), "(file)", "not found")
    kid = write(tmp_path, "kid.toml", 'extends = "nope.toml"\n')
    expect_error(kid, "extends", "not found")


def test_directory_and_binary_files(tmp_path):
    expect_error(tmp_path, "(file)", "directory")
    path = tmp_path / "bin.toml"
    path.write_bytes(b"name = '\xff\xfe'\n")
    expect_error(path, "(file)", "UTF-8")


def test_unknown_builtin(tmp_path):
    err = expect_error("no-such-scenario", "(name)", "unknown built-in", file="no-such-scenario")
    for name in BUILTINS:
        assert name in err.problem
    kid = write(tmp_path, "kid.toml", 'extends = "basline"\n')
    err = expect_error(kid, "extends", "unknown built-in")
    assert "baseline" in err.problem


def test_extends_cycles(tmp_path):
    a = write(tmp_path, "a.toml", 'extends = "b.toml"\n')
    b = write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    err = expect_error(a, "extends", "cycle", file=b)
    assert "a.toml" in err.problem and "b.toml" in err.problem
    me = write(tmp_path, "me.toml", 'extends = "./me.toml"\n')
    expect_error(me, "extends", "cycle")


def test_error_in_parent_names_the_parent(tmp_path):
    parent = write(tmp_path, "parent.toml", 'extends = "baseline"\nbogus = 1\n')
    kid = write(tmp_path, "kid.toml", 'extends = "parent.toml"\n')
    expect_error(kid, "bogus", "unknown key", file=parent)


def test_load_by_bare_relative_name(tmp_path, monkeypatch):
    write(tmp_path, "mine", 'extends = "baseline"\ndescription = "m"\n')
    monkeypatch.chdir(tmp_path)
    assert load_scenario("mine").name == "mine"


# ---------------------------------------------------------------------------------------------
# properties

months_st = st.integers(min_value=parse_month("1980-01"), max_value=parse_month("2040-12"))
step_levers = st.sampled_from([k for k, v in LEVERS.items() if v.mode != "pulse"])


def _points_text(lever: str, months: list[int], values: list[float]) -> str:
    items = ", ".join(
        f'{{ date = "{format_month(mo)}", value = {v!r} }}'
        for mo, v in zip(months, values, strict=True)
    )
    return f"[timeline.{lever}]\npoints = [{items}]\n"


def _in_range(lever: str):
    spec = LEVERS[lever]
    return st.floats(min_value=spec.low, max_value=spec.high, allow_nan=False)


@SETTINGS
@given(data=st.data(), lever=step_levers)
def test_sorted_points_load(tmp_path_factory, data, lever):
    months = sorted(data.draw(st.sets(months_st, min_size=1, max_size=8)))
    values = data.draw(st.lists(_in_range(lever), min_size=len(months), max_size=len(months)))
    tmp = tmp_path_factory.mktemp("p")
    s = load_scenario(child(tmp, _points_text(lever, months, values)))
    pts = [p for p in s.timeline[lever] if months[0] <= p.month <= months[-1]]
    assert [(p.month, p.value) for p in pts] == list(zip(months, values, strict=True))
    series = s.lever_series(months[0], months[-1] - months[0] + 1)[lever]
    for mo, v in zip(months, values, strict=True):
        assert series[mo - months[0]] == pytest.approx(v)
    again = load_scenario(write(tmp, "again.toml", s.to_toml()))
    assert again == s and again.hash() == s.hash()


@SETTINGS
@given(data=st.data(), lever=step_levers)
def test_unsorted_points_fail(tmp_path_factory, data, lever):
    months = data.draw(st.lists(months_st, min_size=2, max_size=8))
    if all(a < b for a, b in zip(months, months[1:], strict=False)):
        months = [months[1], months[0], *months[2:]]  # not strictly increasing
    values = data.draw(st.lists(_in_range(lever), min_size=len(months), max_size=len(months)))
    path = child(tmp_path_factory.mktemp("u"), _points_text(lever, months, values))
    err = expect_error(path)
    assert err.key.startswith(f"timeline.{lever}.points[")
    assert err.key.endswith("].date")
    assert "out of order" in err.problem or "duplicate date" in err.problem


@SETTINGS
@given(data=st.data(), lever=st.sampled_from(list(LEVERS)))
def test_out_of_range_values_fail(tmp_path_factory, data, lever):
    spec = LEVERS[lever]
    bad = data.draw(
        st.one_of(
            st.floats(max_value=spec.low, exclude_max=True, allow_nan=False, allow_infinity=True),
            st.floats(min_value=spec.high, exclude_min=True, allow_nan=False, allow_infinity=True),
        )
    )
    path = child(tmp_path_factory.mktemp("r"), _points_text(lever, [parse_month("2000-01")], [bad]))
    expect_error(path, f"timeline.{lever}.points[0].value", "outside")


@SETTINGS
@given(text=st.text(max_size=300))
def test_junk_text_is_a_scenario_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("j") / "junk.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.file == str(path)


toml_ish = st.lists(
    st.sampled_from(
        [
            'name = "x"',
            "start = '1990-01'",
            "end = 2025-12-01",
            "[timeline.food_index]",
            "points = [",
            '{ date = "1990-01", value = 1 },',
            "]",
            "[params.demography]",
            "life_expectancy_1990 = 'old'",
            "[[timeline.border_security.points]]",
            'date = "1990-01"',
            "value = 0.3",
            'extends = "baseline"',
            "replace_until = 1",
            "[timeline.redenomination]",
            "points = []",
            "x = { a = [1, 2] }",
            "= =",
            "#",
            'decision_rule = "planned"',
            "[params]",
            "demography = []",
        ]
    ),
    max_size=12,
)


@SETTINGS
@given(lines=toml_ish)
def test_toml_ish_junk_never_escapes(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("t") / "t.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        s = load_scenario(path)
    except ScenarioError as err:
        assert err.file.endswith(".toml")
    else:
        assert isinstance(s, Scenario)


@SETTINGS
@given(blob=st.binary(max_size=200))
def test_junk_bytes_are_a_scenario_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("b") / "b.toml"
    path.write_bytes(blob)
    with pytest.raises(ScenarioError):
        load_scenario(path)


def test_point_month():
    assert Point("2009-12", 1.0).month == parse_month("2009-12")


def test_docs_cover_levers_and_builtins():
    doc = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"
    if not doc.is_file():
        pytest.skip("docs/scenarios.md not present")
    text = doc.read_text(encoding="utf-8")
    for lever in LEVERS:
        assert f"| `{lever}` |" in text, lever
    for name in builtin_scenarios():
        assert f"| `{name}` |" in text, name
