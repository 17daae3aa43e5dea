"""Plots: real PNGs from small frames, clear errors, atomic writes."""
import struct

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from matplotlib.text import Text

from pyterrier_disco.plots import (_depth_bins, depth_figure, depth_table, plot_bars, plot_by_depth, plot_tradeoff,
                                   significant_systems, tradeoff_figure)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _per_turn():
    rng = np.random.default_rng(0)
    rows = []
    for system in ["DiSCo", "SPLADE-raw", "T5-rewrite"]:
        for conv in range(4):
            for turn in range(11):
                rows.append({"system": system, "turn": turn, "RR": float(rng.uniform()),
                             "q_len": int(rng.integers(5, 60))})
    return pd.DataFrame(rows)


def _summary():
    return pd.DataFrame({"system": ["DiSCo", "SPLADE-raw", "LLM-rewrite"], "FLOPs": [2.1, 1.3, 0.9],
                         "ms_per_query": [12.0, 9.0, 900.0], "R@100": [0.61, 0.48, 0.58]})


def test_plot_by_depth_writes_png(tmp_path):
    out = plot_by_depth(_per_turn(), tmp_path / "fig" / "depth.png", metric="RR")
    assert out == tmp_path / "fig" / "depth.png"
    width, height = _png_size(out)
    assert width > 800 and height > 300  # two panels side by side
    assert out.stat().st_size > 10_000
    assert [p.name for p in out.parent.iterdir()] == ["depth.png"]  # no temp file left


def test_depth_bins_pool_deep_turns():
    turns = pd.Series([0, 3, 7, 8, 9, 15])
    binned = _depth_bins(turns, 8)
    assert list(binned) == ["0", "3", "7", "8+", "8+", "8+"]
    assert list(binned.categories)[-2:] == ["7", "8+"] and binned.ordered


def test_depth_table_equals_loop_means():
    per_turn = _per_turn()
    table = depth_table(per_turn, "RR", max_turn=8).set_index(["system", "depth"])
    for system in per_turn["system"].unique():
        for depth, turns in [("0", {0}), ("5", {5}), ("8+", {8, 9, 10})]:
            rows = [r for r in per_turn.itertuples() if r.system == system and r.turn in turns]
            assert table.loc[(system, depth), "RR"] == pytest.approx(sum(r.RR for r in rows) / len(rows))
            assert table.loc[(system, depth), "q_len"] == pytest.approx(sum(r.q_len for r in rows) / len(rows))
    assert len(table) == 3 * 9


def test_plot_tradeoff_writes_png(tmp_path):
    for x, log_x in [("FLOPs", False), ("ms_per_query", True)]:
        out = plot_tradeoff(_summary(), tmp_path / f"{x}.png", x=x, y="R@100", log_x=log_x)
        width, height = _png_size(out)
        assert width > 400 and height > 300 and out.stat().st_size > 5_000


def test_missing_column_is_named(tmp_path):
    with pytest.raises(ValueError, match="q_len"):
        plot_by_depth(_per_turn().drop(columns=["q_len"]), tmp_path / "a.png")
    with pytest.raises(ValueError, match="nDCG@10"):
        plot_by_depth(_per_turn(), tmp_path / "a.png", metric="nDCG@10")
    with pytest.raises(ValueError, match="FLOPs"):
        plot_tradeoff(_summary().drop(columns=["FLOPs"]), tmp_path / "b.png")
    with pytest.raises(ValueError, match="DiSCo"):
        plot_tradeoff(pd.concat([_summary(), _summary().iloc[:1]]), tmp_path / "b.png")
    with pytest.raises(ValueError, match="numeric"):
        plot_tradeoff(_summary().assign(FLOPs=["a", "b", "c"]), tmp_path / "b.png")
    with pytest.raises(ValueError, match="no rows"):
        plot_by_depth(_per_turn().iloc[:0], tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file_and_keeps_old(tmp_path, monkeypatch):
    target = tmp_path / "tradeoff.png"
    plot_tradeoff(_summary(), target)
    before = target.read_bytes()

    def broken_savefig(self, f, **kwargs):
        f.write(PNG_MAGIC + b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_tradeoff(_summary(), target)
    with pytest.raises(OSError, match="disk full"):
        plot_by_depth(_per_turn(), tmp_path / "depth.png")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tradeoff.png"]


def _label_boxes(fig):
    """Display-space boxes of the trade-off labels (the text alone, without leader lines)."""
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = []
    for text in ax.texts:
        text.update_positions(renderer)
        boxes.append(Text.get_window_extent(text, renderer))
    return ax, renderer, boxes


def _crowded_summary(n, seed):
    """Systems with long names, several nearly on top of each other, some at the edges of the data."""
    rng = np.random.default_rng(seed)
    names = [f"DiSCo student {'+teacher' * int(rng.integers(0, 4))} #{i}" for i in range(n)]
    flops = np.r_[[2.0, 2.02, 2.05], rng.uniform(0.4, 4.0, n - 3)]
    recall = np.r_[[0.70, 0.705, 0.698], rng.uniform(0.40, 0.90, n - 3)]
    return pd.DataFrame({"system": names, "FLOPs": flops, "R@100": recall,
                         "R@100 reject": [i % 2 == 0 for i in range(n)]})


@pytest.mark.parametrize("n, seed", [(3, 0), (7, 1), (9, 2), (12, 3), (15, 4)])
def test_tradeoff_labels_neither_collide_nor_leave_the_axes(n, seed):
    summary = _crowded_summary(n, seed)
    fig = tradeoff_figure(summary, x="FLOPs", y="R@100", baseline="SPLADE")
    ax, renderer, boxes = _label_boxes(fig)
    assert len(boxes) == n
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:]), f"label {i} overlaps another"
    area, page = ax.get_window_extent(renderer), fig.bbox
    for box in boxes:
        assert area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    points = ax.transData.transform(summary[["FLOPs", "R@100"]].to_numpy())
    for box in boxes:  # no label hides a point
        assert not any(box.contains(px, py) for px, py in points)
    # every label is anchored (its leader line drawn) at its own system's point, marked when significant
    rows = summary.set_index("system")
    for text in ax.texts:
        name = text.get_text().removesuffix(" *")
        assert text.get_text().endswith(" *") == rows.loc[name, "R@100 reject"]
        assert text.xy == (rows.loc[name, "FLOPs"], rows.loc[name, "R@100"])


def test_significance_marks_on_both_figures(tmp_path):
    summary = _summary().assign(**{"R@100 reject": [True, np.nan, False]})
    assert significant_systems(summary, "R@100", "system") == {"DiSCo"}
    assert significant_systems(summary, "RR", "system") == set()  # no test of RR: no marks
    fig = tradeoff_figure(summary, x="FLOPs", y="R@100", baseline="SPLADE-raw")
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["DiSCo *", "LLM-rewrite", "SPLADE-raw"]
    notes = [t.get_text() for t in fig.texts]
    assert notes == ["* significantly different from 'SPLADE-raw' over all turns (paired t-test, "
                     "Bonferroni-corrected)"]
    assert not tradeoff_figure(_summary(), x="FLOPs", y="R@100").texts  # no test, no note

    depth = depth_figure(_per_turn(), significant={"DiSCo"}, baseline="SPLADE-raw")
    assert sorted(t.get_text() for t in depth.legends[0].get_texts()) == ["DiSCo *", "SPLADE-raw", "T5-rewrite"]
    assert [t.get_text() for t in depth.texts] == notes


def test_by_depth_ticks_give_the_number_of_turns():
    per_turn = _per_turn()
    per_turn = per_turn[~((per_turn["system"] == "T5-rewrite") & (per_turn["turn"] == 10))]  # one system short
    fig = depth_figure(per_turn, max_turn=8)
    for ax in fig.axes[:2]:
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        # _per_turn: 4 conversations of 11 turns per system; depth 8+ pools turns 8, 9, 10
        assert ticks[:8] == [f"{d}\nn=4" for d in range(8)]
        assert ticks[8] == "8+\nn=8-12"
    table = depth_table(per_turn, max_turn=8).set_index(["system", "depth"])
    assert table.loc[("DiSCo", "8+"), "n"] == 12 and table.loc[("T5-rewrite", "8+"), "n"] == 8


def test_plot_bars_one_panel_per_group(tmp_path):
    table = pd.DataFrame({"label": ["SPLADE QR T1", "DiSCo T1", "DiSCo T1", "DiSCo T1+T2"],
                          "R@100": [0.83, 0.90, 0.90, 0.93], "panel": ["per teacher"] * 2 + ["multi-teachers"] * 2})
    two = plot_bars(table, tmp_path / "two.png")
    one = plot_bars(table[table["panel"] == "per teacher"], tmp_path / "one.png")
    assert _png_size(two)[0] > 1.6 * _png_size(one)[0] and _png_size(one)[1] > 300
    with pytest.raises(ValueError, match="panel"):
        plot_bars(table.drop(columns=["panel"]), tmp_path / "x.png")
    with pytest.raises(ValueError, match="numeric"):
        plot_bars(table.assign(**{"R@100": ["a"] * 4}), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
