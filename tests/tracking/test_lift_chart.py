"""The lift chart draws each student's 95% interval as a whisker and says its verdict on the bar:
"n.d." where not distinguishable, and the transfer ratio only where it exists."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import polars as pl
from matplotlib import pyplot as plt

from transfer.tracking import lift


def _rows() -> pl.DataFrame:
    return pl.DataFrame({
        "recipe": ["r", "r"], "variant": ["vanilla_kd", "vanilla_kd"], "started": ["t", "t"], "role": ["student", "student"],
        "vertical": ["a", "b"], "lift %": [0.5, 2.0], "lift % low": [-0.2, 1.0], "lift % high": [1.2, 3.0],
        "vs baseline": ["not distinguishable", "better"], "transfer ratio": [None, 0.5],
    })


def test_each_bar_has_its_interval_as_a_whisker_and_its_verdict(tmp_path, monkeypatch):
    drawn = {}
    real_subplots = plt.subplots

    def keep(*args, **kwargs):
        fig, ax = real_subplots(*args, **kwargs)
        drawn["ax"] = ax
        return fig, ax

    monkeypatch.setattr(plt, "subplots", keep)
    lift.draw_lift_chart(_rows(), tmp_path / "lift.png")
    ax = drawn["ax"]
    whiskers = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    spans = sorted(tuple(round(v, 6) for v in seg[:, 1]) for c in whiskers for seg in c.lines[2][0].get_segments())
    assert spans == [(-0.2, 1.2), (1.0, 3.0)]
    notes = sorted(text.get_text() for text in ax.texts)
    assert notes == ["better\nTR 0.50", "n.d."]
    assert (tmp_path / "lift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_point_outside_its_percentile_interval_still_draws(tmp_path):
    """A percentile interval need not hold its point estimate: the whisker is clamped, the chart is drawn."""
    rows = _rows().with_columns(pl.Series("lift % low", [0.6, 1.0]))  # 0.5 lies below its interval [0.6, 1.2]
    lift.draw_lift_chart(rows, tmp_path / "lift.png")
    assert (tmp_path / "lift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
