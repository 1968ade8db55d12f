"""The command line: bad input refused cleanly, runs written atomically, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import COLD_WAIT

TALBUK = [sys.executable, "-m", "talbuk.cli"]
SMALL = ["--scale", "5000", "--seed", "2", "--quiet"]


def talbuk(*args, cwd=None, timeout=COLD_WAIT):
    return subprocess.run([*TALBUK, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def test_scenarios_lists_builtins():
    r = talbuk("scenarios")
    assert r.returncode == 0
    for name in ("baseline", "no-famine", "no-foreign-media", "open-border"):
        assert name in r.stdout


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('name = "x"\nextends = "baseline"\nspeed = 3\n', "speed"),
        ('name = "x"\nextends = "baseline"\n[params.demography]\nlife_expectancy_1990 = "old"\n',
         "params.demography.life_expectancy_1990"),
        ('name = "x"\nextends = "baseline"\n[params.demography]\nlife_expectancy_1990 = 500\n',
         "params.demography.life_expectancy_1990"),
        ('name = "x"\nextends = "baseline"\n[timeline.border_security]\npoints = [{date = "2010-01", value = 0.5}, {date = "2005-01", value = 0.6}]\n',
         "timeline.border_security"),
        ('name = "x"\nextends = "baseline"\n[timeline.border_security]\npoints = [{date = "2010-01", value = 7}]\n',
         "timeline.border_security"),
    ],
)
def test_bad_scenario_refused_before_anything_runs(tmp_path, body, key):
    bad = tmp_path / "bad.toml"
    bad.write_text(body)
    out = tmp_path / "run"
    r = talbuk("run", "--scenario", bad, "--out", out, *SMALL)
    assert r.returncode == 2
    assert "bad.toml" in r.stderr and key in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_unknown_scenario_and_bad_options(tmp_path):
    r = talbuk("run", "--scenario", "no-such-scenario", "--out", tmp_path / "x", *SMALL)
    assert r.returncode == 2 and "no-such-scenario" in r.stderr and "Traceback" not in r.stderr
    r = talbuk("run", "--scale", "0.5", "--out", tmp_path / "y", "--quiet")
    assert r.returncode == 2 and "--scale" in r.stderr
    r = talbuk("run", "--seed", "-1", "--out", tmp_path / "z", "--quiet")
    assert r.returncode == 2 and "--seed" in r.stderr
    assert not (tmp_path / "x").exists()


def test_existing_run_not_overwritten_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    r = talbuk("run", "--out", out, *SMALL)
    assert r.returncode == 2 and "--force" in r.stderr
    assert (out / "keep.txt").read_text() == "earlier result"


def test_unwritable_output_refused(tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/talbuk-cannot-write/run")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "run"
    r = talbuk("run", "--out", target, *SMALL)
    assert r.returncode == 2 and "writable" in r.stderr


def _wait_for_checkpoint(work: Path, months: int, proc, timeout=COLD_WAIT):
    t0 = time.time()
    while time.time() - t0 < timeout:
        meta = work / "checkpoint.json"
        if meta.exists():
            try:
                if json.loads(meta.read_text())["months_done"] >= months:
                    return
            except (json.JSONDecodeError, KeyError):
                pass
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint written in time")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run the interrupted ones must reproduce, made once for both signals."""
    ref = tmp_path_factory.mktemp("cli") / "ref"
    r = talbuk("run", "--out", ref, "--scale", "3000", "--seed", "4", "--quiet")
    assert r.returncode == 0, r.stderr
    return ref


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_to_identical_tables(tmp_path, sig, uninterrupted):
    ref = uninterrupted
    out = tmp_path / "run"
    proc = subprocess.Popen([*TALBUK, "run", "--out", str(out), "--scale", "3000", "--seed", "4",
                             "--checkpoint-every", "12", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell that starts the suite in the background ignores SIGINT
                            # in its children, and Python then never turns it into
                            # KeyboardInterrupt: give the run the default disposition
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_checkpoint(Path(str(out) + ".partial"), 24, proc)  # early: most of the run left
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:  # finished before the signal landed: nothing to test
        pytest.skip("run finished before it could be interrupted")
    assert not out.exists()
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "talbuk resume" in stderr and "Traceback" not in stderr
    r = talbuk("resume", out, "--quiet")
    assert r.returncode == 0, r.stderr
    for f in ("monthly.parquet", "annual.parquet", "province_annual.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(ref / f), pd.read_parquet(out / f), check_exact=True)
        assert (ref / f).read_bytes() == (out / f).read_bytes()
    assert not Path(str(out) + ".partial").exists()


def test_rerun_reproduces_byte_for_byte(tmp_path):
    out = tmp_path / "run"
    assert talbuk("run", "--out", out, *SMALL).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 2 and manifest["scale"] == 5000
    from talbuk.results import cpu_description

    assert manifest["cpu"] == cpu_description()  # the machine, beside the timings
    r = talbuk("rerun", out, "--out", tmp_path / "again", "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "identical" in r.stdout


def test_report_is_self_contained(tmp_path):
    out = tmp_path / "run"
    assert talbuk("run", "--out", out, *SMALL).returncode == 0
    r = talbuk("report", out)
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html  # no CDN, works offline


def test_compare_refuses_bad_input(tmp_path):
    r = talbuk("compare", "baseline", "no-such-scenario", "--out", tmp_path / "c")
    assert r.returncode == 2 and "no-such-scenario" in r.stderr and "Traceback" not in r.stderr
    r = talbuk("compare", "baseline", "no-famine", "--runs", "0", "--out", tmp_path / "c")
    assert r.returncode == 2 and "--runs" in r.stderr
    assert not (tmp_path / "c").exists()


def test_cpu_description_reads_the_first_processor():
    """Timings are only comparable on the same kind of CPU: the manifest says which."""
    import platform

    from talbuk.results import cpu_description

    cpu = cpu_description()
    assert cpu["cpus"] >= 1 and isinstance(cpu["name"], str) and cpu["name"]
    if platform.system() == "Linux":
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        if "cpu family" in first:
            assert isinstance(cpu["family"], int) and isinstance(cpu["model"], int)
        if "flags" in first:
            assert cpu["avx512"] == (" avx512f" in first)
