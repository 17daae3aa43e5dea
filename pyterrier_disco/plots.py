"""The DiSCo paper's figures: effectiveness by conversation depth (Fig. 6) and the effectiveness-efficiency
trade-off (Fig. 5). Figures are drawn on matplotlib's Agg canvas (no pyplot, no global backend change)
and written as PNG atomically.

Both figures carry the comparison table's significance marks: a system whose ``"<measure> reject"`` is true
(``pt.Experiment`` with a baseline, see :func:`pyterrier_disco.evaluation.compare`) is labelled ``name *``,
with a note naming the baseline and the test. The by-depth figure gives the number of turns each depth
averages under its tick; the trade-off figure places each label where it overlaps no other label or point
and stays inside the axes.
"""
import math
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from ._utils import atomic_file

SIGNIFICANCE_NOTE = "* significantly different from {baseline} over all turns (paired t-test, Bonferroni-corrected)"
# label offsets in points: 12 directions, nearest ring first; labels beyond the first ring get a leader line
_RINGS = (8, 16, 28, 42, 58, 78, 100)
_DIRECTIONS = (45, -45, 135, -135, 0, 180, 90, -90, 20, -20, 160, -160)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError(f"{what} has no rows")
    for col in columns[1:]:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise ValueError(f"{what} column {col!r} must be numeric, got dtype {frame[col].dtype}")


def _save_png(fig: Figure, out_png) -> Path:
    out_png = Path(out_png)
    FigureCanvasAgg(fig)
    with atomic_file(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=150, bbox_inches="tight")
    return out_png


def significant_systems(summary: pd.DataFrame, measure: str, label: str = "label") -> Set[str]:
    """The ``label`` of every system whose ``measure`` differs significantly from the baseline (its
    ``"<measure> reject"`` column, as ``pt.Experiment`` writes it); empty without that column."""
    column = f"{measure} reject"
    if column not in summary.columns:
        return set()
    return {str(name) for name, r in zip(summary[label], summary[column]) if r is True or r == 1.0}


def _marked(name, significant: Set[str]) -> str:
    return f"{name} *" if str(name) in significant else str(name)


def _significance_note(fig: Figure, significant: Set[str], baseline: Optional[str]) -> None:
    if significant:
        fig.text(0.01, 0.005, SIGNIFICANCE_NOTE.format(baseline=repr(baseline) if baseline else "the baseline"),
                 fontsize="small", va="bottom")


# -- Figure 6: effectiveness and query length by depth -----------------------------------------------------
def _depth_bins(turns: pd.Series, max_turn: int) -> pd.Series:
    """Depth labels ``0 .. max_turn-1`` and ``"<max_turn>+"`` for deeper turns, ordered by depth."""
    labels = [str(t) for t in range(max_turn)] + [f"{max_turn}+"]
    binned = turns.clip(upper=max_turn).astype(int).map(lambda t: labels[t])
    return pd.Categorical(binned, categories=labels, ordered=True)


def depth_table(per_turn: pd.DataFrame, metric: str = "RR", max_turn: Optional[int] = 8) -> pd.DataFrame:
    """Mean ``metric`` and ``q_len`` per ``system`` and depth bin (column ``depth``, ordered categorical), with
    ``n``, the number of turns averaged: the numbers that :func:`plot_by_depth` draws. Turns ``>= max_turn``
    are pooled as ``"<max_turn>+"``."""
    _require(per_turn, ["system", "turn", metric, "q_len"], "per_turn")
    if (per_turn["turn"] < 0).any():
        raise ValueError("per_turn column 'turn' must be 0-based depths (found negative values)")
    frame = per_turn[["system", "turn", metric, "q_len"]].copy()
    if max_turn is None:
        max_turn = int(frame["turn"].max()) + 1
    frame["depth"] = _depth_bins(frame["turn"], max_turn)
    groups = frame.groupby(["system", "depth"], observed=True)
    return groups[[metric, "q_len"]].mean().join(groups.size().rename("n")).reset_index()


def _count_label(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return f"n={low}" if low == high else f"n={low}-{high}"


def depth_figure(per_turn: pd.DataFrame, metric: str = "RR", max_turn: Optional[int] = 8,
                 title: Optional[str] = None, significant: Iterable[str] = (),
                 baseline: Optional[str] = None) -> Figure:
    """The figure :func:`plot_by_depth` writes."""
    means = depth_table(per_turn, metric, max_turn)
    significant = {str(s) for s in significant}
    labels: List[str] = list(means["depth"].cat.categories)
    positions = {label: i for i, label in enumerate(labels)}

    fig = Figure(figsize=(10, 4.6))
    ax_metric, ax_len = fig.subplots(1, 2)
    for system, rows in means.groupby("system", sort=True):
        x = [positions[d] for d in rows["depth"]]
        ax_metric.plot(x, rows[metric], marker="o", label=_marked(system, significant))
        ax_len.plot(x, rows["q_len"], marker="o", label=_marked(system, significant))
    counts = means.groupby("depth", observed=True)["n"].agg(_count_label)
    used = sorted(positions[d] for d in counts.index)
    ticks = [f"{labels[i]}\n{counts[labels[i]]}" for i in used]
    for ax, ylabel in [(ax_metric, metric), (ax_len, "query length (q_len)")]:
        ax.set_xticks(used, ticks, fontsize="small")
        ax.set_xlabel("conversation depth (turn; n = turns averaged)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_metric.set_title(f"{metric} by depth")
    ax_len.set_title("query sparsity by depth")
    if title:
        fig.suptitle(title)
    # the legend under the panels, where it hides no line
    handles, names = ax_metric.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 3), fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, 0.04))
    fig.subplots_adjust(bottom=0.22 + 0.05 * math.ceil(len(names) / 3), wspace=0.25)
    _significance_note(fig, significant, baseline)
    return fig


def plot_by_depth(per_turn: pd.DataFrame, out_png, metric: str = "RR", max_turn: Optional[int] = 8,
                  title: Optional[str] = None, significant: Iterable[str] = (),
                  baseline: Optional[str] = None) -> Path:
    """Effectiveness and query length by conversation depth, one line per system (the paper's Figure 6).

    Args:
        per_turn: long frame with columns ``system``, ``turn`` (0-based depth), ``metric`` and ``q_len``
            (one row per system and query; rows are averaged per system and depth). Each depth tick says how
            many turns it averages.
        out_png: where to write the PNG.
        metric: the effectiveness column, plotted in the left panel.
        max_turn: turns ``>= max_turn`` are pooled as ``"<max_turn>+"`` (``None``: no pooling).
        title: optional figure title.
        significant: systems significantly different from ``baseline`` over all turns (see
            :func:`significant_systems`), marked ``*`` in the legend.

    Returns:
        The path of the written PNG.
    """
    return _save_png(depth_figure(per_turn, metric, max_turn, title, significant, baseline), out_png)


# -- Figure 5: effectiveness against cost ----------------------------------------------------------------
def _overlap(box: Bbox, others: Sequence[Bbox]) -> float:
    """Area of ``box`` covered by ``others`` (display units)."""
    total = 0.0
    for other in others:
        w = min(box.x1, other.x1) - max(box.x0, other.x0)
        h = min(box.y1, other.y1) - max(box.y0, other.y0)
        if w > 0 and h > 0:
            total += w * h
    return total


def _outside(box: Bbox, area: Bbox) -> float:
    return max(area.x0 - box.x0, 0) + max(box.x1 - area.x1, 0) + max(area.y0 - box.y0, 0) + max(box.y1 - area.y1, 0)


def _crossings(start, box: Bbox, others: Sequence[Bbox], samples: int = 12) -> int:
    """How many points of the leader line from ``start`` to ``box``'s centre (outside ``box``) fall in ``others``."""
    (x0, y0), (x1, y1) = start, ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
    line = [(x0 + (x1 - x0) * t / samples, y0 + (y1 - y0) * t / samples) for t in range(1, samples)]
    return sum(1 for x, y in line if not box.contains(x, y) for other in others if other.contains(x, y))


def _cross(a, b, c, d) -> bool:
    """Whether segments ab and cd cross (proper intersection)."""
    def side(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0


def _place_labels(fig: Figure, ax, names: Sequence[str], xs: Sequence[float], ys: Sequence[float]) -> list:
    """Annotate each point with its name at the nearest offset (a leader line beyond the first ring) where the
    label overlaps no other label and no point, its leader line crosses no label, point or other leader line, and
    it stays inside the axes; greedy, the most crowded points first; the least bad offset when none is free.
    Returns the annotations."""
    renderer = fig.canvas.get_renderer()
    area = ax.get_window_extent(renderer)
    scale = fig.dpi / 72.0  # display units per point
    points = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    pad = 4 * scale  # marker radius plus a gap
    marks = [Bbox.from_extents(px - pad, py - pad, px + pad, py + pad) for px, py in points]
    labels: List[Bbox] = []
    leaders = []  # (point, label centre) of the labels placed with a leader line
    annotations = []
    crowding = [sum(math.dist(p, q) < 40 * scale for q in points) for p in points]
    for i in sorted(range(len(names)), key=lambda i: (-crowding[i], ys[i], xs[i])):  # crowded points first
        others = labels + marks[:i] + marks[i + 1:]
        best = None
        for ring in _RINGS:
            for angle in _DIRECTIONS:
                dx, dy = ring * math.cos(math.radians(angle)), ring * math.sin(math.radians(angle))
                text = ax.annotate(
                    names[i], (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy), fontsize="small",
                    ha="left" if dx > 1 else "right" if dx < -1 else "center",
                    va="bottom" if dy > 1 else "top" if dy < -1 else "center",
                    arrowprops=dict(arrowstyle="-", color="0.5", lw=0.6) if ring > _RINGS[0] else None)
                text.update_positions(renderer)
                box = Text.get_window_extent(text, renderer).padded(1.5 * scale)  # the text alone, no leader
                leader = (points[i], ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)) if ring > _RINGS[0] else None
                cost = (_overlap(box, others + marks[i:i + 1]) + 1e6 * _outside(box, area)
                        + 100 * scale ** 2 * _crossings(points[i], box, others)
                        + 50 * scale ** 2 * sum(_cross(*leader, *other) for other in leaders if leader))
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, text, box, leader)
                else:
                    text.remove()
            if best[0] == 0:
                break
        labels.append(best[2])
        leaders += [best[3]] if best[3] else []
        annotations.append(best[1])
    return annotations


def tradeoff_figure(summary: pd.DataFrame, x: str = "FLOPs", y: str = "R@100", label: str = "system",
                    log_x: bool = False, title: Optional[str] = None, baseline: Optional[str] = None) -> Figure:
    """The figure :func:`plot_tradeoff` writes; its point labels are its ``texts`` annotations."""
    _require(summary, [label, x, y], "summary")
    duplicated = summary[label][summary[label].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"summary has more than one row for {label} {duplicated}")
    if log_x and (summary[x] <= 0).any():
        raise ValueError(f"log_x needs positive values in column {x!r}")
    significant = significant_systems(summary, y, label)
    if baseline is None:
        baseline = summary.attrs.get("baseline")

    extra = 0.35 * max(0, len(summary) - 8)  # room for the labels of many systems
    fig = Figure(figsize=(6.5 + extra, 5 + extra))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter(summary[x], summary[y], zorder=2)
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.25, y=0.2)  # room for the labels of the outermost points
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.subplots_adjust(bottom=0.16)
    _significance_note(fig, significant, baseline)
    ax.set_xlim(ax.get_xlim())  # freeze the limits: the labels are placed in display coordinates
    ax.set_ylim(ax.get_ylim())
    _place_labels(fig, ax, [_marked(n, significant) for n in summary[label]], list(summary[x]), list(summary[y]))
    return fig


def plot_tradeoff(summary: pd.DataFrame, out_png, x: str = "FLOPs", y: str = "R@100", label: str = "system",
                  log_x: bool = False, title: Optional[str] = None, baseline: Optional[str] = None) -> Path:
    """Effectiveness-efficiency trade-off, one labelled point per system (the paper's Figure 5).

    Args:
        summary: one row per system with columns ``label``, ``x`` and ``y`` (and ``"<y> reject"`` when the
            comparison had a baseline: those systems are labelled ``*``).
        out_png: where to write the PNG.
        x: efficiency column (e.g. ``"FLOPs"`` or ``"ms_per_query"``).
        y: effectiveness column (e.g. ``"R@100"``).
        label: the column naming each point.
        log_x: logarithmic x axis (efficiency figures often span orders of magnitude).
        title: optional figure title.
        baseline: the baseline's name for the significance note (default: ``summary.attrs["baseline"]``).

    Returns:
        The path of the written PNG.
    """
    return _save_png(tradeoff_figure(summary, x, y, label, log_x, title, baseline), out_png)


def plot_bars(table: pd.DataFrame, out_png, y: str = "R@100", label: str = "label", panel: str = "panel",
              title: Optional[str] = None) -> Path:
    """Bars of ``y`` per system, one panel per value of ``panel`` side by side (the paper's Figure 4).

    Args:
        table: rows with columns ``panel``, ``label`` and ``y`` (a system may appear in several panels).
        out_png: where to write the PNG.
    """
    _require(table, [label, y], "table")
    _require(table, [panel], "table")
    names = list(dict.fromkeys(table[panel]))
    fig = Figure(figsize=(5 * len(names), 4.5))
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    low = max(0.0, float(table[y].min()) - 0.05)
    for ax, name in zip(axes, names):
        rows = table[table[panel] == name]
        ax.bar(range(len(rows)), rows[y], zorder=2)
        ax.set_xticks(range(len(rows)), [str(v) for v in rows[label]], rotation=30, ha="right", fontsize="small")
        ax.set_ylim(low, min(1.0, float(table[y].max()) + 0.05))
        ax.set_title(str(name))
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(y)
    if title:
        fig.suptitle(title)
    return _save_png(fig, out_png)
