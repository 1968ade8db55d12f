"""Figure of ``benchmarks/results.json``: throughput against population, and phase times.

    python benchmarks/plot_results.py [results.json] [results.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ("demography", "economy", "information", "attitudes", "decision", "journey", "left_behind")


def _when(*measured: dict) -> str:
    """The days the figures were measured, for a legend: machines and their load differ from
    one day to the next, so figures of different days are not comparable as absolute
    speeds."""
    days = sorted({str(r.get("measured_at", ""))[:10] for r in measured} - {""})
    return f"; {', '.join(days)}" if days else ""


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    # left: agent-months per second against simulated persons
    for key in sorted(k for k in results if k.startswith("scaling")):
        sc = results[key]
        pts = sc.get("points", [])
        if not pts:
            continue
        scales = ", ".join(f"{p['scale']:g}" for p in pts)
        th = sc.get("threads", 2)
        ax1.plot([p["agents_initial"] for p in pts], [p["agent_months_per_second"] / 1e6 for p in pts],
                 "o-" if th == 2 else "o--",
                 label=f"talbuk, {th} thread{'s' if th > 1 else ''}, {sc.get('window', '')} (scale {scales})"
                       f"{_when(sc)}")
    for th, marker in ((1, "s"), (2, "^")):
        runs = [r for r in results.get("runs", []) if r["threads"] == th]
        if runs:
            ax1.plot([r["agents_initial"] for r in runs], [r["agent_months_per_second"] / 1e6 for r in runs],
                     marker, ms=8, label=f"talbuk, {th} thread{'s' if th > 1 else ''}, whole 1990-2025 runs"
                                             f"{_when(*runs)}")
    m = results.get("mesa")
    if m:
        ax1.plot([m["agents_initial"]], [m["mesa"]["agent_months_per_second"] / 1e6], "x", ms=10, mew=2,
                 color="crimson", label=f"Mesa reference, {m['window']}{_when(m)}")
        for th, r in m["talbuk"].items():
            ax1.plot([m["agents_initial"]], [r["agent_months_per_second"] / 1e6], "+", ms=10, mew=2,
                     label=f"talbuk, {th} thread(s), same population as Mesa")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("simulated persons (agents) in January 1990")
    ax1.set_ylabel("throughput (million agent-months per second)")
    ax1.set_title("Throughput against population (full model)")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7, loc="lower right")
    # right: nanoseconds per agent-month by phase
    rows = []
    for r in results.get("runs", []):
        am = r["agent_months_per_second"] * r["run_seconds"]
        rows.append((f"scale {r['scale']:g}, {r['threads']} thr", r["phase_seconds"], am))
    if m:
        am = m["mesa"]["agent_months_per_second"] * m["mesa"]["run_seconds"]
        rows.append(("Mesa (/100)", {k: v / 100 for k, v in m["mesa"]["phase_seconds"].items()}, am))
    colors = plt.get_cmap("tab10")
    for i, (_label, phases, am) in enumerate(rows):
        left = 0.0
        for j, ph in enumerate(PHASES):
            w = 1e9 * phases.get(ph, 0.0) / am if am else 0.0
            ax2.barh(i, w, left=left, color=colors(j), label=ph if i == 0 else None)
            left += w
    ax2.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax2.set_xlabel("nanoseconds per agent-month (Mesa: divided by 100)")
    ax2.set_title("Where the time goes, by phase")
    ax2.legend(fontsize=7, loc="lower right")
    ax2.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png)


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    png = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".png")
    plot(json.loads(src.read_text()), png)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
