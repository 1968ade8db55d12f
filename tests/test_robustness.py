"""Property-based tests of bad input at the command line (issue: robustness).

Every malformed scenario must be refused before anything runs: exit status 2, one line that
names the file (and the key where there is one), no traceback, no run folder, and an existing
run left untouched. The command is invoked in-process (typer's runner), so hundreds of
cases take seconds.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from talbuk.cli import app
from talbuk.scenario import LEVERS

runner = CliRunner()
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run_cli(body: str):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        scenario = d / "broken.toml"
        scenario.write_text(body)
        existing = d / "old-run"
        existing.mkdir()
        (existing / "annual.parquet").write_bytes(b"earlier result")
        out = d / "new-run"
        r = runner.invoke(app, ["run", "--scenario", str(scenario), "--out", str(out), "--scale", "5000", "--quiet"])
        untouched = (existing / "annual.parquet").read_bytes() == b"earlier result"
        leftovers = sorted(p.name for p in d.iterdir() if p.name not in ("broken.toml", "old-run"))
        return r, untouched, leftovers


def _assert_refused(r, untouched, leftovers, key: str | None = None):
    assert r.exit_code == 2, (r.exit_code, r.output)
    message = r.stderr.strip()
    assert "broken.toml" in message
    if key is not None:
        assert key in message
    assert "Traceback" not in r.output
    assert untouched and leftovers == []


@SETTINGS
@given(st.text(alphabet=string.printable, min_size=1, max_size=200))
def test_random_text_is_refused_cleanly(text):
    body = 'extends = "baseline"\n' + text
    r, untouched, leftovers = _run_cli(body)
    if r.exit_code == 0:  # the random text happened to be a valid, harmless scenario
        return
    _assert_refused(r, untouched, leftovers)


@SETTINGS
@given(st.sampled_from(sorted(k for k, v in LEVERS.items() if v.mode != "pulse")),
       st.lists(st.integers(1990, 2025), min_size=2, max_size=6),
       st.floats(0, 1))
def test_unsorted_or_duplicate_dates_name_the_lever(lever, years, value):
    if years == sorted(set(years)):
        years = years[::-1] if len(set(years)) > 1 else years + years  # force disorder or a duplicate
    points = ", ".join(f'{{date = "{y}-01", value = {value * LEVERS[lever].high}}}' for y in years)
    body = f'extends = "baseline"\n[timeline.{lever}]\npoints = [{points}]\n'
    _assert_refused(*_run_cli(body), key=f"timeline.{lever}")


@SETTINGS
@given(st.sampled_from(sorted(LEVERS)), st.one_of(st.floats(1e6, 1e9), st.floats(-1e9, -1e-3)))
def test_out_of_range_values_name_the_lever(lever, value):
    body = f'extends = "baseline"\n[timeline.{lever}]\npoints = [{{date = "2000-01", value = {value!r}}}]\n'
    _assert_refused(*_run_cli(body), key=f"timeline.{lever}")


@SETTINGS
@given(st.sampled_from(["life_expectancy_1990", "household_split_prob", "sex_ratio_at_birth"]),
       st.one_of(st.text(alphabet=string.ascii_letters, min_size=1, max_size=8).map(lambda s: f'"{s}"'),
                 st.just("[1, 2]"), st.just("{a = 1}"), st.just("true")))
def test_wrong_types_name_the_parameter(param, value):
    body = f'extends = "baseline"\n[params.demography]\n{param} = {value}\n'
    _assert_refused(*_run_cli(body), key=f"params.demography.{param}")


@SETTINGS
@given(st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20))
def test_unknown_keys_are_refused(key):
    known = {"name", "description", "extends", "start", "end", "decision_rule", "params", "timeline"}
    if key in known:
        return
    _assert_refused(*_run_cli(f'extends = "baseline"\n{key} = 1\n'), key=key)


def test_missing_scenario_file(tmp_path):
    r = runner.invoke(app, ["run", "--scenario", str(tmp_path / "absent.toml"), "--out", str(tmp_path / "x"), "--quiet"])
    assert r.exit_code == 2 and "absent.toml" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()
