"""The web explorer (`talbuk serve`): validation of browser input, edited scenarios, the
background runner, the figures, the command line, and the page itself in Chromium.

The browser test starts `talbuk serve` as a subprocess and drives Debian's Chromium with
Playwright; it is skipped (with the reason) only if /usr/bin/chromium is missing (`make test`
installs it).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pn = pytest.importorskip("panel", reason="the web extra (panel) is not installed")

from talbuk import serve as web  # noqa: E402
from talbuk.calendar import format_month, parse_month  # noqa: E402
from talbuk.scenario import LEVERS, Scenario, load_scenario  # noqa: E402
from tests.helpers import COLD_WAIT  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
FAST_SCALE = 20000  # about 1,000 agents: a whole 1990-2025 run in about a second


@pytest.fixture(scope="module")
def baseline() -> Scenario:
    return load_scenario("baseline")


def _edit_form(lever: str, op: str, start: str, end: str, value) -> dict:
    return {f"{lever}.op": op, f"{lever}.from": start, f"{lever}.to": end, f"{lever}.value": value}


# ------------------------------------------------------------------------------------------
# validation of what the browser sends


def test_defaults_are_accepted_and_change_nothing():
    req = web.validate_request({})
    assert req == web.RunRequest(scenario="baseline", scale=2000, runs=1, seed=1, edits=())


def test_a_full_form_is_accepted():
    form = {"scenario": "no-famine", "scale": "5000", "runs": 3, "seed": "7"}
    form |= _edit_form("border_security", "set", "2000-01", "2025-12", "1")
    form |= _edit_form("media_supply", "scale", "2000-01", "2010-12", "0.5")
    form |= _edit_form("market_tolerance", "history", "", "", "")
    form |= _edit_form("food_index", "famine", "1994-01", "1998-12", 2)
    req = web.validate_request(form)
    assert (req.scenario, req.scale, req.runs, req.seed) == ("no-famine", 5000, 3, 7)
    assert [(e.lever, e.op, e.start, e.end, e.value) for e in req.edits] == [
        ("border_security", "set", "2000-01", "2025-12", 1.0),
        ("media_supply", "scale", "2000-01", "2010-12", 0.5),
        ("food_index", "famine", "1994-01", "1998-12", 2.0),
    ]


BORDER = "border_security"
BAD_INPUT = [
    ({"scale": "100000"}, "scale"),          # oversized
    ({"scale": 499}, "scale"),               # below the bound
    ({"scale": "2000.5"}, "scale"),
    ({"scale": "1e9"}, "scale"),
    ({"scale": True}, "scale"),
    ({"runs": "-1"}, "runs"),                # negative
    ({"runs": 0}, "runs"),
    ({"runs": "6"}, "runs"),
    ({"seed": "-3"}, "seed"),
    ({"seed": "abc"}, "seed"),
    ({"seed": "9" * 200}, "seed"),           # oversized text
    ({"scenario": "../etc/passwd"}, "scenario"),  # a path is never opened
    ({"scenario": "/tmp/x.toml"}, "scenario"),
    ({"scenario": "baseline.toml"}, "scenario"),
    ({"scenario": "scenarios/baseline"}, "scenario"),
    ({"scenario": ""}, "scenario"),
    ({"scenario": None}, "scenario"),
    (_edit_form(BORDER, "set", "2000-13", "2001-01", "1"), f"{BORDER}.from"),  # malformed dates
    (_edit_form(BORDER, "set", "2000/01", "2001-01", "1"), f"{BORDER}.from"),
    (_edit_form(BORDER, "set", "2000-01", "20011", "1"), f"{BORDER}.to"),
    (_edit_form(BORDER, "set", "2000-01", "", "1"), f"{BORDER}.to"),
    (_edit_form(BORDER, "set", "1989-12", "2001-01", "1"), f"{BORDER}.from"),  # outside 1990-2025
    (_edit_form(BORDER, "set", "2000-01", "2026-01", "1"), f"{BORDER}.to"),
    (_edit_form(BORDER, "set", "2005-01", "2001-01", "1"), f"{BORDER}.to"),  # ends before it starts
    (_edit_form(BORDER, "set", "2000-01", "2001-01", "1.5"), f"{BORDER}.value"),  # out of range
    (_edit_form(BORDER, "set", "2000-01", "2001-01", "-0.1"), f"{BORDER}.value"),
    (_edit_form("food_index", "set", "1995-01", "1996-01", "2.5"), "food_index.value"),
    (_edit_form(BORDER, "set", "2000-01", "2001-01", "nan"), f"{BORDER}.value"),
    (_edit_form(BORDER, "set", "2000-01", "2001-01", "inf"), f"{BORDER}.value"),
    (_edit_form(BORDER, "scale", "2000-01", "2001-01", "1e400"), f"{BORDER}.value"),
    (_edit_form(BORDER, "scale", "2000-01", "2001-01", "11"), f"{BORDER}.value"),
    (_edit_form(BORDER, "set", "2000-01", "2001-01", "one"), f"{BORDER}.value"),
    (_edit_form("food_index", "famine", "1994-01", "1998-12", "4"), "food_index.value"),
    (_edit_form(BORDER, "famine", "1994-01", "1998-12", "2"), f"{BORDER}.op"),  # food only
    (_edit_form(BORDER, "delete", "1994-01", "1998-12", "2"), f"{BORDER}.op"),
    ({f"{BORDER}.op": "history", f"{BORDER}.value": "x" * 1000}, f"{BORDER}.value"),
    ({"scenario_file": "/etc/passwd"}, "scenario_file"),  # unknown field
    ({"pds_grams.op": "set"}, "pds_grams.op"),  # a lever the explorer does not edit
]


@pytest.mark.parametrize(("form", "field"), BAD_INPUT)
def test_bad_input_is_refused_naming_the_field(form, field):
    with pytest.raises(web.InputError) as info:
        web.validate_request(form)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{field}: ") and "\n" not in message and len(message) < 400


def test_not_a_form_is_refused():
    with pytest.raises(web.InputError):
        web.validate_request(["scale", 2000])


# ------------------------------------------------------------------------------------------
# the edited scenario


def _series(sc: Scenario) -> dict[str, np.ndarray]:
    return sc.lever_series(sc.start_month, sc.n_months)


def _window(sc: Scenario, start: str, end: str) -> np.ndarray:
    months = np.arange(sc.start_month, sc.end_month + 1)
    return (months >= parse_month(start)) & (months <= parse_month(end))


def test_sealing_the_border_changes_only_the_period(baseline):
    edit = web.LeverEdit(BORDER, "set", "2000-01", "2009-12", 1.0)
    edited = web.apply_edits(baseline, [edit])
    assert isinstance(edited, Scenario) and edited.name == "baseline+edited"
    old, new = _series(baseline), _series(edited)
    inside = _window(baseline, "2000-01", "2009-12")
    assert (new[BORDER][inside] == 1.0).all()
    np.testing.assert_array_equal(new[BORDER][~inside], old[BORDER][~inside])
    for lever in LEVERS:  # nothing else moved
        if lever != BORDER:
            np.testing.assert_array_equal(new[lever], old[lever])
    assert any("set by hand in talbuk serve" in p.source for p in edited.timeline[BORDER])


def test_no_media_keeps_the_linear_history_outside_the_period(baseline):
    edit = web.LeverEdit("media_supply", "set", "2000-01", "2010-12", 0.0)
    new = _series(web.apply_edits(baseline, [edit]))["media_supply"]
    old = _series(baseline)["media_supply"]
    inside = _window(baseline, "2000-01", "2010-12")
    assert (new[inside] == 0.0).all()
    np.testing.assert_allclose(new[~inside], old[~inside], rtol=0, atol=1e-12)


def test_famine_severity(baseline):
    none = web.apply_edits(baseline, [web.LeverEdit("food_index", "famine", "1994-01", "1998-12", 0.0)])
    same = web.apply_edits(baseline, [web.LeverEdit("food_index", "famine", "1994-01", "1998-12", 1.0)])
    worse = web.apply_edits(baseline, [web.LeverEdit("food_index", "famine", "1994-01", "1998-12", 2.0)])
    inside = _window(baseline, "1994-01", "1998-12")
    old = _series(baseline)["food_index"]
    assert (_series(none)["food_index"][inside] == 1.0).all()  # no shortfall at all
    np.testing.assert_allclose(_series(same)["food_index"], old, atol=1e-12)
    w = _series(worse)["food_index"]
    assert (w[inside] <= old[inside] + 1e-12).all() and w[inside].min() >= 0.0  # clipped at 0
    np.testing.assert_allclose(w[~inside], old[~inside], atol=1e-12)


def test_edits_leave_the_loaded_scenario_alone(baseline):
    before = baseline.to_toml()
    web.apply_edits(baseline, [web.LeverEdit(BORDER, "set", "1990-01", "2025-12", 0.0)])
    assert baseline.to_toml() == before
    assert web.apply_edits(baseline, []) is baseline


def test_values_are_clipped_to_the_lever_range(baseline):
    edited = web.apply_edits(baseline, [web.LeverEdit(BORDER, "scale", "1990-01", "2025-12", 10.0),
                                        web.LeverEdit("food_index", "scale", "1990-01", "2025-12", 10.0)])
    s = _series(edited)
    assert s[BORDER].max() == 1.0 and s["food_index"].max() == 2.0


_FIRST, _LAST = parse_month("1990-01"), parse_month("2025-12")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lever=st.sampled_from(web.EDIT_LEVERS), a=st.integers(_FIRST, _LAST),
       b=st.integers(_FIRST, _LAST), factor=st.floats(0.0, 1.0))
def test_scaling_over_any_period_is_exact_and_local(baseline, lever, a, b, factor):
    """Multiplying by a factor in [0, 1] never clips (all four levers have low = 0 and values
    within range), so inside the period the series is exactly factor x history and outside it
    is history, to rounding."""
    start, end = format_month(min(a, b)), format_month(max(a, b))
    edited = web.apply_edits(baseline, [web.LeverEdit(lever, "scale", start, end, factor)])
    old, new = _series(baseline)[lever], _series(edited)[lever]
    inside = _window(baseline, start, end)
    np.testing.assert_allclose(new[inside], factor * old[inside], rtol=0, atol=1e-9)
    np.testing.assert_allclose(new[~inside], old[~inside], rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------
# the runner: one run at a time, timeout, common random numbers with a cached baseline


def test_runner_refuses_a_second_request_and_caches_the_baseline():
    runner = web.Runner(threads=1, timeout=COLD_WAIT)
    req = web.validate_request({"scale": FAST_SCALE, "seed": 3})  # baseline, no edits
    first = runner.submit(req, owner="a")
    with pytest.raises(web.Busy, match="already in progress"):
        runner.submit(req, owner="b")
    st1 = runner.wait(COLD_WAIT)
    assert st1.job_id == first and not st1.running and st1.error == ""
    out = st1.outcome
    # the same scenario and seed as the baseline: common random numbers give identical years
    a = out.annual
    s = a[a["which"] == "scenario"].reset_index(drop=True)
    b = a[a["which"] == "baseline"].reset_index(drop=True)
    np.testing.assert_array_equal(s["arrivals_expected"].to_numpy(), b["arrivals_expected"].to_numpy())
    assert out.baseline_from_cache == 0
    # an edit: a new job, the baseline comes from the cache, and arrivals after the border is
    # sealed fall (the sealed years, not only the totals)
    req2 = web.validate_request({"scale": FAST_SCALE, "seed": 3,
                                 **_edit_form(BORDER, "set", "2000-01", "2025-12", "1")})
    runner.submit(req2)
    st2 = runner.wait(COLD_WAIT)
    assert st2.error == "" and st2.job_id == first + 1
    assert st2.outcome.baseline_from_cache == 1
    a2 = st2.outcome.annual
    early = {w: a2[(a2["which"] == w) & (a2["year"] < 2000)]["arrivals_expected"].to_numpy()
             for w in ("scenario", "baseline")}
    np.testing.assert_array_equal(early["scenario"], early["baseline"])  # same luck before the edit
    t = web.totals(st2.outcome)
    assert t["scenario"]["arrivals_expected"] < t["baseline"]["arrivals_expected"]
    base_again = st2.outcome.annual[st2.outcome.annual["which"] == "baseline"].reset_index(drop=True)
    np.testing.assert_array_equal(base_again["arrivals_expected"].to_numpy(), b["arrivals_expected"].to_numpy())
    # figures carry axis labels and sources
    for fig in (web.arrivals_figure(st2.outcome), web.motives_figure(st2.outcome),
                web.levers_figure(st2.outcome.reference, st2.outcome.scenario)):
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel()
        assert any("ource" in t.get_text() for t in fig.texts)  # "Source" / "Recorded ... source"
    for name in ("arrivals", "motives"):  # drawn by the runner's thread, ready for the page
        assert st2.outcome.pngs[name].startswith(b"\x89PNG")
    text = web.summary_markdown(st2.outcome)
    assert "scenario `baseline+edited`" in text and "baseline:" in text


def test_runner_stops_at_its_time_limit():
    runner = web.Runner(threads=1, timeout=0.05)
    runner.submit(web.validate_request({"scale": FAST_SCALE}))
    st = runner.wait(60)
    assert not st.running and st.outcome is None
    assert "longer than the server's limit" in st.error


def test_runner_takes_only_validated_requests():
    with pytest.raises(TypeError):
        web.Runner().submit({"scale": 1})


# ------------------------------------------------------------------------------------------
# the page, in-process (no browser): bad input shows a red alert and nothing runs


def _widget(app, css: str):
    found = [o for o in app.select() if css in (getattr(o, "css_classes", None) or [])]
    assert len(found) == 1, css
    return found[0]


@pytest.mark.parametrize(("css", "value", "field"), [
    ("tb-runs", "99", "runs"),
    ("tb-scale", "1", "scale"),
    ("tb-seed", "-1", "seed"),
    ("tb-border_security-value", "7", "border_security.value"),
])
def test_page_refuses_bad_input_and_runs_nothing(css, value, field):
    runner = web.Runner(threads=1)
    app = web.build_app(runner)
    if css == "tb-border_security-value":
        _widget(app, "tb-border_security-op").value = "set"
    _widget(app, css).value = value
    _widget(app, "tb-run").clicks += 1
    alert = _widget(app, "tb-error")
    assert alert.visible and alert.object.startswith(f"{field}: ")
    assert runner.status().job_id == 0 and not runner.status().running


def test_page_scenarios_are_the_built_in_ones():
    from talbuk.scenario import builtin_scenarios

    app = web.build_app(web.Runner())
    assert list(_widget(app, "tb-scenario").options) == list(builtin_scenarios())


# ------------------------------------------------------------------------------------------
# the command line


def test_serve_binds_to_loopback_by_default():
    import inspect

    from talbuk import cli

    assert inspect.signature(cli.serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(web.serve).parameters["host"].default == "127.0.0.1"
    assert web.is_loopback("127.0.0.1") and web.is_loopback("localhost") and web.is_loopback("::1")
    assert not web.is_loopback("0.0.0.0") and not web.is_loopback("192.168.1.5")


@pytest.mark.parametrize(("args", "key"), [
    (["--port", "0"], "--port"),
    (["--port", "70000"], "--port"),
    (["--host", "a b"], "--host"),
    (["--host", "http://x/"], "--host"),
    (["--timeout", "1"], "--timeout"),
    (["--threads", "0"], "--threads"),
])
def test_serve_bad_options_exit_2_with_one_line(args, key):
    from typer.testing import CliRunner

    from talbuk.cli import app

    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.output


def test_serve_warns_when_bound_elsewhere(monkeypatch):
    from typer.testing import CliRunner

    from talbuk.cli import app

    called = {}
    monkeypatch.setattr(web, "serve", lambda host, port, **kw: called.update(host=host, port=port))
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "5999"])
    assert result.exit_code == 0 and called == {"host": "0.0.0.0", "port": 5999}
    assert "warning" in result.output and "0.0.0.0" in result.output
    called.clear()
    result = CliRunner().invoke(app, ["serve", "--port", "5999"])
    assert result.exit_code == 0 and called["host"] == "127.0.0.1" and "warning" not in result.output


# ------------------------------------------------------------------------------------------
# the real server and the page in Chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                addr, hexport = parts[1].split(":")
                if parts[3] == "0A" and int(hexport, 16) == port:
                    found.add(addr)
    return found


@pytest.fixture(scope="module")
def server():
    """`talbuk serve` on a free port. Its output is drained by a thread; the fixture waits for
    the line it prints once the page is built (Panel's warm-up), then for one page load (a
    single long request: a retried short one would queue a session per try)."""
    port = _free_port()
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "talbuk.cli", "serve", "--port", str(port),
                             "--threads", "1", "--timeout", str(COLD_WAIT)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(
        ln.decode(errors="replace") for ln in proc.stdout), daemon=True)
    drain.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + COLD_WAIT
        while not any("talbuk explorer: http://" in ln for ln in lines):
            if proc.poll() is not None:
                drain.join(5)
                pytest.fail("talbuk serve exited: " + "".join(lines)[-2000:])
            if time.monotonic() > deadline:
                pytest.fail(f"talbuk serve did not start within {COLD_WAIT} s: " + "".join(lines)[-2000:])
            time.sleep(0.3)
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("talbuk serve does not accept connections")
                time.sleep(0.3)
        with urllib.request.urlopen(url, timeout=COLD_WAIT) as r:
            assert r.status == 200
        yield port, url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_server_listens_on_loopback_only(server):
    port, url = server
    addresses = _listening_addresses(port)
    if not addresses:
        pytest.skip("no /proc/net/tcp to read the listening sockets from")
    assert addresses == {"0100007F"}  # 127.0.0.1, not 0.0.0.0 (00000000) nor any IPv6 address


def test_served_html_references_only_local_resources(server):
    port, url = server
    html = urllib.request.urlopen(url, timeout=10).read().decode()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert refs, "expected script and link references"
    external = [r for r in refs if re.match(r"(?i)(https?:)?//", r)]
    assert external == []


def _summary_numbers(page) -> dict[str, float]:
    items = page.locator(".tb-summary li").all_inner_texts()
    out = {}
    for text in items:
        m = re.match(r"\s*(scenario|baseline)\b[^:]*:\s*([\d,]+)", text)
        if m:
            out[m.group(1)] = float(m.group(2).replace(",", ""))
    return out


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (make test installs "
                    "Debian's chromium with apt); the browser test needs it")
def test_page_in_chromium_offline(server):
    from playwright.sync_api import expect, sync_playwright

    port, url = server
    external: list[str] = []

    def only_local(route):
        u = route.request.url
        if re.match(rf"(https?|wss?)://127\.0\.0\.1:{port}/", u) or u.startswith(("data:", "blob:")):
            route.continue_()
        else:
            external.append(u)
            route.abort()

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--headless=new"])
        try:
            page = browser.new_page(viewport={"width": 1480, "height": 1250})
            page.route("**/*", only_local)
            page.goto(url)
            page.locator(".tb-run button").wait_for(timeout=60_000)
            img = page.locator(".tb-arrivals img")
            img.wait_for(timeout=30_000)
            before = img.get_attribute("src")
            assert before and before.startswith("data:image/png")

            # a malformed value: a red alert, nothing runs
            page.locator(".tb-runs input").fill("99")
            page.locator(".tb-run button").click()
            page.locator(".tb-error p", has_text="runs: 99 is outside").wait_for(timeout=15_000)
            assert page.locator(".tb-error").is_visible()
            assert img.get_attribute("src") == before

            # seal the border from 2000 and cut foreign media (the default dates and values)
            page.locator(".tb-runs input").fill("1")
            page.locator(".tb-scale input").fill("5000")
            page.locator(".tb-border_security-op select").select_option(label="set to")
            page.locator(".tb-media_supply-op select").select_option(label="set to")
            page.locator(".tb-run button").click()
            page.locator(".tb-summary li", has_text="difference").wait_for(timeout=COLD_WAIT * 1000)
            expect(img).not_to_have_attribute("src", before, timeout=30_000)
            assert not page.locator(".tb-error").is_visible()
            numbers = _summary_numbers(page)
            assert set(numbers) == {"scenario", "baseline"}
            assert numbers["scenario"] != numbers["baseline"]
            assert numbers["scenario"] < numbers["baseline"]  # a sealed border lets fewer out
            assert img.get_attribute("src") != before
            assert page.locator(".tb-motives img").get_attribute("src").startswith("data:image/png")
            page.screenshot(path=str(ARTIFACTS / "serve.png"), full_page=True)
        finally:
            browser.close()
    assert external == [], f"the page tried to reach: {external}"
