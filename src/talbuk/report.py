"""A self-contained HTML report of a run: figures as embedded PNGs, no network needed.

Every figure has axis labels with units and names the source of the observed data it is
compared with. Figures whose outputs a run lacks (modules not built) are skipped and the
report says so.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from talbuk.population import read_data  # noqa: E402
from talbuk.results import read_run  # noqa: E402

MODEL_STYLE = {"color": "#1f4e79", "lw": 2}
DATA_STYLE = {"color": "#c0392b", "marker": "o", "ls": "none", "ms": 5}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fig_population(a: pd.DataFrame):
    pop = read_data("population.csv")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(a["year"], a["population"] / 1e6, label="model (year end)", **MODEL_STYLE)
    ax.plot(pop["year"], pop["population"] / 1e6, label="census / UN estimate", **DATA_STYLE)
    ax.set_xlabel("year")
    ax.set_ylabel("people in North Korea (millions)")
    ax.set_title("Population")
    ax.legend(frameon=False)
    return fig, "Source of observations: 1993 and 2008 DPRK censuses; UN WPP 2019 (data/population.csv)."


def _fig_vital(a: pd.DataFrame):
    vr = read_data("vital_rates.csv")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(a["year"], a["births"] / a["population"] * 1000, label="model births", **MODEL_STYLE)
    ax.plot(a["year"], a["deaths"] / a["population"] * 1000, label="model deaths", color="#555", lw=2)
    ax.plot(vr["year"], vr["crude_birth_rate_per_1000"], label="UN births", **DATA_STYLE)
    ax.plot(vr["year"], vr["crude_death_rate_per_1000"], label="UN deaths", color="#222", marker="s", ls="none")
    ax.set_xlabel("year")
    ax.set_ylabel("per 1,000 people per year")
    ax.set_title("Crude birth and death rates")
    ax.legend(frameon=False, ncol=2)
    return fig, "Source of observations: UN WPP 2024 via a secondary aggregator (data/vital_rates.csv)."


def _fig_excess(a: pd.DataFrame, pa: pd.DataFrame):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].bar(a["year"], a["excess_deaths"] / 1e3, color="#1f4e79")
    axes[0].set_xlabel("year")
    axes[0].set_ylabel("excess deaths (thousands)")
    total = a.loc[a["year"].between(1993, 2000), "excess_deaths"].sum()
    axes[0].set_title(f"Deaths from hunger: {total / 1e3:,.0f}k in 1993-2000")
    if "excess_deaths" in pa.columns and len(pa):
        sel = pa[pa["year"].between(1993, 2000)].groupby("province")
        per_head = (sel["excess_deaths"].sum() / sel["population"].mean() * 1000).sort_values()
        axes[1].barh(per_head.index, per_head.values, color="#c0392b")
        axes[1].set_xlabel("excess deaths 1993-2000 per 1,000 people")
        axes[1].set_title("By province")
    return fig, ("Target: 240,000-1,000,000 excess deaths in 1993-2000 (data/targets.csv: "
                 "Spoorenberg & Schwekendiek 2012; Goodkind, West & Johnson 2011; Noland).")


def _fig_arrivals(a: pd.DataFrame):
    rec = read_data("arrivals_rok.csv")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(a["year"], a["arrivals"], label="model (sampled)", color="#7fa7d1", lw=1.5)
    if "arrivals_expected" in a.columns:
        ax.plot(a["year"], a["arrivals_expected"], label="model (expected flow)", **MODEL_STYLE)
    ax.plot(rec["year"], rec["arrivals"], label="Ministry of Unification", **DATA_STYLE)
    ax.set_xlabel("year of arrival")
    ax.set_ylabel("defectors arriving in South Korea (people per year)")
    ax.set_title("Arrivals in South Korea")
    ax.legend(frameon=False)
    return fig, "Source of observations: Ministry of Unification and earlier official tables (data/arrivals_rok.csv)."


def _fig_economy(a: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for col, label in (("pds_share", "fed by the PDS (share of people)"),
                       ("trading_share", "households trading"),
                       ("market_income_share", "markets' share of household income"),
                       ("hungry_share", "hungry (share of people)")):
        if col in a.columns:
            ax.plot(a["year"], a[col], label=label, lw=2)
    ax.plot([1989, 1997], [0.62, 0.06], **DATA_STYLE, label="PDS dependence (targets.csv)")
    ax.add_patch(plt.Rectangle((2010, 0.6), 9, 0.2, alpha=0.15, color="green", label="market income share 2010s"))
    ax.set_xlabel("year")
    ax.set_ylabel("share (0-1)")
    ax.set_ylim(0, 1)
    ax.set_title("Rations and markets")
    ax.legend(frameon=False, fontsize=8)
    return fig, "Targets: Haggard & Noland (2007); Kim & Kim (2016) (data/targets.csv)."


def _fig_media(a: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for col, label in (("media_ever_share", "adults ever exposed"),
                       ("media_ever_share_border", "adults ever exposed, border provinces")):
        if col in a.columns:
            ax.plot(a["year"], a[col], label=label, lw=2)
    ax.errorbar([2008, 2010], [0.20, 0.48], yerr=[[0.05, 0.05], [0.05, 0.05]], label="InterMedia 2012",
                **{k: v for k, v in DATA_STYLE.items() if k != "ls"}, ls="none")
    ax.set_xlabel("year")
    ax.set_ylabel("share who had watched foreign media")
    ax.set_ylim(0, 1)
    ax.set_title("Foreign media")
    ax.legend(frameon=False)
    return fig, "Source of observations: InterMedia, A Quiet Opening (2012) (data/targets.csv)."


def _fig_pipeline(a: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for col in ("preparing", "in_china", "repatriated", "arrivals"):
        if col in a.columns:
            ax.plot(a["year"], a[col], label=col.replace("_", " "), lw=2)
    ax.set_yscale("symlog", linthresh=100)
    ax.set_xlabel("year")
    ax.set_ylabel("people (stocks at year end, flows per year)")
    ax.set_title("The journey pipeline")
    ax.legend(frameon=False)
    return fig, "Targets: people in China 10,000-300,000 in 2002 and 30,000-100,000 in 2006 (data/targets.csv)."


def _fig_motives(res):
    from talbuk.compare import motives

    m = motives(res)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for gen, g in m.groupby("generation"):
        g = g[g["arrivals"] > 0]
        ax.plot(g["year"], g["pulled_share"], marker="o", ms=3, lw=1.5, label=gen)
    ax.axhline(0.5, color="#888", lw=1, ls=":")
    ax.set_ylim(0, 1)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("year of arrival")
    ax.set_ylabel("share of arrivals mainly pulled (desire)")
    ax.set_title("Motives: pull (media, kin, markets) over push (hunger, loss, punishment)")
    ax.legend(frameon=False, fontsize=8)
    return fig, ("Model attribution from each decision's push and pull components; one run, sampled "
                 "arrivals (noisy at coarse scales). Generations split at birth year 1985.")


FIGURES = (
    ("population", ("population",), _fig_population),
    ("vital_rates", ("births", "deaths"), _fig_vital),
    ("excess_deaths", ("excess_deaths",), None),
    ("arrivals", ("arrivals",), _fig_arrivals),
    ("economy", ("pds_share",), _fig_economy),
    ("media", ("media_ever_share",), _fig_media),
    ("pipeline", ("in_china",), _fig_pipeline),
    ("motives", ("arrivals",), None),
)


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``report.html`` (and ``figures/*.png``) for a run folder; returns the HTML path."""
    run_dir = Path(run_dir)
    res = read_run(run_dir)
    a, pa = res.annual, res.province_annual
    out = Path(out) if out is not None else run_dir / "report.html"
    fig_dir = out.parent / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    missing = []
    for name, needs, maker in FIGURES:
        if not all(c in a.columns for c in needs):
            missing.append(name)
            continue
        if name == "motives" and "defectors" not in res.tables:
            missing.append(name)
            continue
        if name == "excess_deaths":
            fig, caption = _fig_excess(a, pa)
        elif name == "motives":
            fig, caption = _fig_motives(res)
        else:
            fig, caption = maker(a)
        png = _png(fig)
        (fig_dir / f"{name}.png").write_bytes(png)
        parts.append(f"<figure><img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    m = res.manifest
    meta = {k: m.get(k) for k in ("scenario", "version", "seed", "scale", "start", "end", "scenario_hash", "wall_seconds")}
    note = (f"<p class='note'>Not shown (outputs not in this run): {', '.join(missing)}.</p>" if missing else "")
    body = "\n".join(parts)
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>talbuk report: {html.escape(str(m.get('scenario')))}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
figure{{margin:1.5em 0}}img{{max-width:100%}}figcaption{{font-size:.85em;color:#555}}
pre{{background:#f4f4f4;padding:.8em;font-size:.8em}}.note{{color:#888}}</style></head><body>
<h1>talbuk run: {html.escape(str(m.get('scenario')))}</h1>
<pre>{html.escape(json.dumps(meta, indent=1))}</pre>
{note}
{body}
</body></html>
"""
    out.write_text(doc)
    return out
