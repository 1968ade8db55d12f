"""Make the figures and tables of docs/validation.md from an ensemble and a sensitivity folder.

    python docs/validation/make_figures.py [--ensemble runs/validation-ensemble]
                                           [--sensitivity runs/sensitivity-n16] [--run-missing]

With ``--run-missing`` a missing folder is made first with the commands printed below (the
ensemble with the shipped posterior if there is one, otherwise the baseline's own parameters);
without it the script stops and prints them. It writes, into docs/validation/:

* ``arrivals_NAME.png``: arrivals in South Korea, the ensemble's median and 90% band
  (expected and sampled), the record, the calibration and out-of-sample periods (``NAME``:
  the ensemble folder's name);
* ``validation_NAME.json``: ``talbuk validate`` on the ensemble;
* ``sobol.png``, ``sobol.csv``: the Sobol indices, recomputed from the runs' ``samples.parquet``;
* ``tables_NAME.md``: the metrics, targets and Sobol tables in Markdown, pasted into validation.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def ensemble_command(out: Path) -> list[str]:
    from talbuk.calibration.params import default_posterior_path

    cmd = ["talbuk", "ensemble", "--runs", "20", "--scale", "1000", "--seed", "1", "--out", str(out)]
    if default_posterior_path().exists():
        cmd.insert(2, "--posterior")
    return cmd


def sensitivity_command(out: Path) -> list[str]:
    return ["talbuk", "sensitivity", "--n", "16", "--scale", "5000", "--seed", "1", "--jobs", "2",
            "--out", str(out)]


def ensure(folder: Path, cmd: list[str], run_missing: bool) -> None:
    if folder.exists():
        return
    print("missing", folder, "- made with:\n  NUMBA_NUM_THREADS=1 " + " ".join(cmd))
    if not run_missing:
        sys.exit(1)
    subprocess.run([sys.executable, "-m", "talbuk.cli", *cmd[1:]], check=True)


def plot_arrivals(ens: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from talbuk.calibration.validate import read_data

    info = json.loads((ens / "ensemble.json").read_text())
    b = pd.read_parquet(ens / "bands.parquet")
    rec = read_data("arrivals_rok.csv")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for col, colour, label, style, alpha in (("arrivals", "#dd8452", "sampled arrivals", "--", 0.10),
                                             ("arrivals_expected", "#4c72b0", "expected arrivals (headline)", "-", 0.25)):
        s = b[b["output"] == col]
        ax.plot(s["year"], s["median"], style, color=colour, lw=2 if style == "-" else 1.2, label=f"{label}: median")
        ax.fill_between(s["year"], s["q05"], s["q95"], color=colour, alpha=alpha, label=f"{label}: 90% band")
    ax.plot(rec["year"], rec["arrivals"], "o", color="k", ms=4, label="recorded (data/arrivals_rok.csv)")
    ax.axvspan(1999.5, 2019.5, color="#888", alpha=0.08)
    ax.axvspan(2019.5, 2025.5, color="#c44e52", alpha=0.06)
    ax.text(2000, 1.5, "metrics: 2000-2019", fontsize=8)
    ax.text(2020, 1.5, "out of sample", fontsize=8)
    ax.set_yscale("symlog", linthresh=100)
    ax.set_ylim(0, None)
    ax.set_xlabel("year of arrival")
    ax.set_ylabel("arrivals in South Korea (people per year, log)")
    post = info.get("posterior")
    what = "posterior draws" if post else "the scenario's own parameters"
    ax.set_title(f"{info['scenario']}: {info['runs']} runs at scale {info['scale']:g}, {what}", fontsize=10)
    ax.legend(frameon=False, fontsize=7, loc="upper left")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _num(x, digits=3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "**no**"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def tables(val: dict, sobol: pd.DataFrame | None) -> str:
    lines = ["### Arrivals, 2000-2019 and out of sample", "",
             "| column | ARD 2000-2019 | MASE 2000-2019 | 90% band coverage 2000-2019 | 2020-2025 within x2 |",
             "|---|---|---|---|---|"]
    for col, m in val["arrivals"].items():
        oos = m["out_of_sample_2020_2025"]
        cov = "n/a" if m["coverage"] is None else f"{m['coverage']:.0%}"
        head = " (headline)" if col == val["headline_column"] else ""
        lines.append(f"| `{col}`{head} | {_num(m['ard'])} | {_num(m['mase'])} | {cov} | "
                     f"{sum(r['within_factor_2'] for r in oos)} of {len(oos)} |")
    lines += ["", "| year | recorded | simulated (median) | ratio | within x2 | inside 90% band |",
              "|---|---|---|---|---|---|"]
    for r in val["out_of_sample_2020_2025"]:
        lines.append(f"| {r['year']} | {r['observed']:,.0f} | {_num(r['simulated'])} | {_num(r['ratio'], 2)} | "
                     f"{_num(r['within_factor_2'])} | {_num(r.get('inside_band'))} |")
    lines += ["", f"### Targets: {val['targets_in_range']} of {val['targets_checked']} in range", "",
              "| target | year | simulated (median) | 5%-95% over runs | range | in range | measured by |",
              "|---|---|---|---|---|---|---|"]
    for t in val["targets"]:
        spread = (f"{_num(t.get('simulated_q05'))} - {_num(t.get('simulated_q95'))}"
                  if t.get("simulated_q05") is not None else "")
        how = f"`{t['column']}`: {t['how']}" if t["simulated"] is not None else t.get("reason", t["how"])
        lines.append(f"| {t['name']} | {t['year']} | {_num(t['simulated'])} | {spread} | "
                     f"{_num(t['low'])} - {_num(t['high'])} | {_num(t['in_range']) if t['in_range'] is not None else 'n/a'} | {how} |")
    if sobol is not None:
        from talbuk.calibration.sensitivity import OUTPUT_LABELS, PLOTTED

        outs = [o for o in PLOTTED if o in set(sobol["output"])]
        lines += ["", "### Sobol indices (S1 / ST, each ± its 95% bootstrap half-width)", "",
                  "| parameter | " + " | ".join(OUTPUT_LABELS[o] for o in outs) + " |",
                  "|---" * (len(outs) + 1) + "|"]
        t = sobol.set_index(["output", "parameter"])
        for name in dict.fromkeys(sobol["parameter"]):
            cells = []
            for o in outs:
                r = t.loc[(o, name)]
                cells.append(f"{r['S1']:.2f} ± {r['S1_conf']:.2f} / **{r['ST']:.2f}** ± {r['ST_conf']:.2f}")
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ensemble", type=Path, default=ROOT / "runs" / "validation-ensemble")
    ap.add_argument("--sensitivity", type=Path, default=ROOT / "runs" / "sensitivity-n16")
    ap.add_argument("--run-missing", action="store_true", help="make missing folders (minutes)")
    args = ap.parse_args(argv)
    ensure(args.ensemble, ensemble_command(args.ensemble), args.run_missing)
    ensure(args.sensitivity, sensitivity_command(args.sensitivity), args.run_missing)

    from talbuk.calibration.sensitivity import analyse_samples
    from talbuk.calibration.sensitivity import plot as plot_sobol
    from talbuk.calibration.validate import validate, write_json

    tag = args.ensemble.resolve().name  # outputs are named after the ensemble folder
    val = validate(args.ensemble)
    val["path"] = str(args.ensemble.relative_to(ROOT)) if args.ensemble.is_relative_to(ROOT) else str(args.ensemble)
    written = [HERE / f"validation_{tag}.json", HERE / f"arrivals_{tag}.png", HERE / "sobol.png",
               HERE / "sobol.csv", HERE / f"tables_{tag}.md"]
    write_json(val, written[0])
    plot_arrivals(args.ensemble, written[1])
    s_info = json.loads((args.sensitivity / "sensitivity.json").read_text())
    # recomputed from the runs' samples with the current analysis (outputs added since the run,
    # such as the log10 counts, need no new runs)
    sobol = analyse_samples(pd.read_parquet(args.sensitivity / "samples.parquet"),
                            [p["name"] for p in s_info["parameters"]], s_info["seed"])
    sobol.to_csv(HERE / "sobol.csv", index=False, float_format="%.6g")
    plot_sobol(sobol, HERE / "sobol.png",
               f"Sobol indices, {s_info['scenario']}, N={s_info['n']}, {s_info['runs']} runs at scale "
               f"{s_info['scale']:g}, seed {s_info['seed']} for every run")
    written[4].write_text(tables(val, sobol))
    print("wrote", ", ".join(p.name for p in written))


if __name__ == "__main__":
    main()
