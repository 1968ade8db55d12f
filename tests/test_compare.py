"""Scenario comparisons: common random numbers, exact zero against itself, motives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from talbuk.compare import compare, motives, write_comparison
from talbuk.results import Results


def test_scenario_against_itself_is_exactly_zero(tmp_path):
    cmp = compare("baseline", ["baseline"], runs=2, scale=5000, seed=3)
    assert len(cmp.differences) > 0
    assert (cmp.differences[["median", "low", "high"]] == 0).all().all()
    assert (cmp.totals[["median", "low", "high"]] == 0).all().all()
    out = write_comparison(cmp, tmp_path / "cmp")
    for f in ("differences.parquet", "totals.parquet", "runs.parquet", "motives.parquet",
              "differences.png", "manifest.json"):
        assert (out / f).exists()


def test_no_foreign_media_changes_media_exposure_with_narrow_band():
    cmp = compare("baseline", ["no-foreign-media"], runs=2, scale=5000, seed=1,
                  outputs=("media_ever_share", "arrivals_expected"))
    d = cmp.differences
    m2010 = d[(d["output"] == "media_ever_share") & (d["year"] == 2010)].iloc[0]
    # baseline about 0.2-0.5 of adults exposed by 2010, none without foreign media
    assert m2010["high"] < -0.05
    # before any media (1990) the two histories are identical: paired difference exactly 0
    m1990 = d[(d["output"] == "media_ever_share") & (d["year"] == 1990)].iloc[0]
    assert m1990["low"] == m1990["high"] == 0


def test_motives_split_by_generation_and_pull():
    d = pd.DataFrame({
        "arrived": ["2005-03", "2005-07", "2010-01", None],
        "birth_year": [1970, 1990, 1992, 1960],
        "push": [0.9, 0.1, 0.2, 0.5], "pull": [0.1, 0.8, 0.1, 0.9],
        "weight": [100.0, 100.0, 100.0, 100.0],
    })
    res = Results(monthly=pd.DataFrame(), annual=pd.DataFrame(), province_annual=pd.DataFrame(),
                  tables={"defectors": d})
    m = motives(res).set_index(["year", "generation"])
    assert m.loc[(2005, "all"), "arrivals"] == 200
    assert m.loc[(2005, "all"), "pulled_share"] == 0.5
    assert m.loc[(2005, "market generation"), "pulled_share"] == 1.0
    assert m.loc[(2005, "grew up before the famine"), "pulled_share"] == 0.0
    assert m.loc[(2010, "market generation"), "pulled_share"] == 0.0
    assert not np.any(m.index.get_level_values("year") == 1960)  # never arrived: not counted
