"""The DiSCo paper's figures: effectiveness by conversation depth (Fig. 6) and the effectiveness-efficiency
trade-off (Fig. 5). Figures are drawn on matplotlib's Agg canvas (no pyplot, no global backend change)
and written as PNG atomically."""
from pathlib import Path
from typing import List, Optional, Sequence

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._utils import atomic_file


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


def _depth_bins(turns: pd.Series, max_turn: int) -> pd.Series:
    """Depth labels ``0 .. max_turn-1`` and ``"<max_turn>+"`` for deeper turns, ordered by depth."""
    labels = [str(t) for t in range(max_turn)] + [f"{max_turn}+"]
    binned = turns.clip(upper=max_turn).astype(int).map(lambda t: labels[t])
    return pd.Categorical(binned, categories=labels, ordered=True)


def depth_table(per_turn: pd.DataFrame, metric: str = "RR", max_turn: Optional[int] = 8) -> pd.DataFrame:
    """Mean ``metric`` and ``q_len`` per ``system`` and depth bin (column ``depth``, ordered categorical), the
    numbers that :func:`plot_by_depth` draws; turns ``>= max_turn`` are pooled as ``"<max_turn>+"``."""
    _require(per_turn, ["system", "turn", metric, "q_len"], "per_turn")
    if (per_turn["turn"] < 0).any():
        raise ValueError("per_turn column 'turn' must be 0-based depths (found negative values)")
    frame = per_turn[["system", "turn", metric, "q_len"]].copy()
    if max_turn is None:
        max_turn = int(frame["turn"].max()) + 1
    frame["depth"] = _depth_bins(frame["turn"], max_turn)
    return frame.groupby(["system", "depth"], observed=True)[[metric, "q_len"]].mean().reset_index()


def plot_by_depth(per_turn: pd.DataFrame, out_png, metric: str = "RR", max_turn: Optional[int] = 8,
                  title: Optional[str] = None) -> Path:
    """Effectiveness and query length by conversation depth, one line per system (the paper's Figure 6).

    Args:
        per_turn: long frame with columns ``system``, ``turn`` (0-based depth), ``metric`` and ``q_len``
            (one row per system and query; rows are averaged per system and depth).
        out_png: where to write the PNG.
        metric: the effectiveness column, plotted in the left panel.
        max_turn: turns ``>= max_turn`` are pooled as ``"<max_turn>+"`` (``None``: no pooling).
        title: optional figure title.

    Returns:
        The path of the written PNG.
    """
    means = depth_table(per_turn, metric, max_turn)
    labels: List[str] = list(means["depth"].cat.categories)
    positions = {label: i for i, label in enumerate(labels)}

    fig = Figure(figsize=(10, 4))
    ax_metric, ax_len = fig.subplots(1, 2)
    for system, rows in means.groupby("system", sort=True):
        x = [positions[d] for d in rows["depth"]]
        ax_metric.plot(x, rows[metric], marker="o", label=str(system))
        ax_len.plot(x, rows["q_len"], marker="o", label=str(system))
    used = sorted({positions[d] for d in means["depth"]})
    for ax, ylabel in [(ax_metric, metric), (ax_len, "query length (q_len)")]:
        ax.set_xticks(used, [labels[i] for i in used])
        ax.set_xlabel("conversation depth (turn)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_metric.set_title(f"{metric} by depth")
    ax_len.set_title("query sparsity by depth")
    ax_metric.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save_png(fig, out_png)


def plot_tradeoff(summary: pd.DataFrame, out_png, x: str = "FLOPs", y: str = "R@100", label: str = "system",
                  log_x: bool = False, title: Optional[str] = None) -> Path:
    """Effectiveness-efficiency trade-off, one labelled point per system (the paper's Figure 5).

    Args:
        summary: one row per system with columns ``label``, ``x`` and ``y``.
        out_png: where to write the PNG.
        x: efficiency column (e.g. ``"FLOPs"`` or ``"ms_per_query"``).
        y: effectiveness column (e.g. ``"R@100"``).
        label: the column naming each point.
        log_x: logarithmic x axis (efficiency figures often span orders of magnitude).
        title: optional figure title.

    Returns:
        The path of the written PNG.
    """
    _require(summary, [label, x, y], "summary")
    duplicated = summary[label][summary[label].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"summary has more than one row for {label} {duplicated}")
    if log_x and (summary[x] <= 0).any():
        raise ValueError(f"log_x needs positive values in column {x!r}")

    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    ax.scatter(summary[x], summary[y], zorder=2)
    ranks = summary[y].rank(method="first").astype(int)  # alternate label sides so near points stay legible
    for name, xv, yv, r in zip(summary[label], summary[x], summary[y], ranks):
        ax.annotate(str(name), (xv, yv), textcoords="offset points", xytext=(4, 4 if r % 2 else -11),
                    fontsize="small")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return _save_png(fig, out_png)


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
