"""Figures of the course (matplotlib only). Every function draws on `ax` (a new figure when None)
and returns it, so that notebooks can compose panels with plt.subplots."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

LABELS = {
    "kl_to_sft": "KL(π ‖ π_sft), exact per token (nats)",
    "kl_to_sft_sampled": "KL(π ‖ π_sft), sampled log-ratio (nats)",
    "kl_to_anchor": "log π/π_ema (nats)",
    "reward_mean": "mean reward r(x, y)",
    "reward_std": "reward std",
    "response_len": "completion length (tokens)",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "vader_compound": "VADER compound",
    "vader_positive_share": "share VADER-positive",
    "loss": "REINFORCE loss",
    "eta": "η",
}


def label_of(column: str) -> str:
    """A readable axis label for a metric column."""
    return LABELS.get(column, column.replace("_", " "))


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4))
    return ax


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{what} has no column {missing[0]!r} (columns: {list(table.columns)})")


# ----------------------------------------------------------------------------- reward-KL front


def plot_front(fronts: pd.DataFrame, ax=None, x: str = "kl_to_sft", y: str = "reward_mean",
               by: str = "label", annotate: bool = True, errorbars: bool = True):
    """KL on x, reward on y: one curve per value of `by` (e.g. per WARP iteration), points in eta
    order and annotated with eta, as the paper's Fig. 1(b). `<x>_ci95` / `<y>_ci95` columns, when
    present, are drawn as error bars. A missing or empty `by` column gives a single curve."""
    _require(fronts, [x, y], "fronts")
    ax = _axes(ax)
    if fronts.empty:
        raise ValueError("fronts must hold at least 1 row")
    if by in fronts.columns and fronts[by].notna().any():
        groups = list(fronts.groupby(by, sort=False, dropna=False))
    else:
        groups = [(None, fronts)]
    for name, group in groups:
        if "eta" in group.columns:
            group = group.sort_values("eta")
        xerr = group[f"{x}_ci95"] if errorbars and f"{x}_ci95" in group.columns else None
        yerr = group[f"{y}_ci95"] if errorbars and f"{y}_ci95" in group.columns else None
        label = None if name is None or (isinstance(name, float) and np.isnan(name)) else str(name)
        container = ax.errorbar(group[x], group[y], xerr=xerr, yerr=yerr, marker="o", markersize=5,
                                linewidth=1.5, capsize=2, elinewidth=0.8, label=label)
        color = container.lines[0].get_color()
        if annotate and "eta" in group.columns:
            for _, row in group.iterrows():
                ax.annotate(f"η={row['eta']:g}", (row[x], row[y]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, color=color)
    ax.set_xlabel(label_of(x))
    ax.set_ylabel(label_of(y))
    ax.set_title("Reward vs KL to SFT along LITI (η annotated)")
    ax.grid(alpha=0.3)
    if any(name is not None for name, _ in groups):
        ax.legend(title=by, fontsize=8)
    return ax


# ----------------------------------------------------------------------------- training curves


def plot_training_curves(metrics: pd.DataFrame, column: str, ax=None, window: int | None = None,
                         steps_per_iteration: int | None = None):
    """One curve per (iteration, run) of `column` against the global step: iteration i is shifted
    by (i - 1) T so that iteration 2 follows iteration 1 (T = the largest step, unless given).
    Raw values faint, a centred rolling mean (window ~ a tenth of the points unless given) on top;
    dashed lines mark the start of each iteration (where the runs restart from the LITI init).
    Steps where `column` was not measured (NaN: the KL to SFT runs every `kl_every` steps) are
    left out, so the lines join the measured points."""
    _require(metrics, ["iteration", "run", "step", column], "metrics")
    if metrics.empty:
        raise ValueError("metrics must hold at least 1 row")
    ax = _axes(ax)
    T = int(steps_per_iteration or metrics["step"].max())
    measured = metrics.dropna(subset=[column])  # e.g. the KL to SFT, measured every kl_every steps
    if measured.empty:
        raise ValueError(f"metrics hold no measured value of {column!r}")
    points_per_run = int(measured.groupby(["iteration", "run"]).size().max())
    window = int(window or max(1, round(points_per_run / 10)))  # ~ T / 10 when measured at every step
    runs = sorted(metrics["run"].astype(int).unique())
    iterations = sorted(metrics["iteration"].astype(int).unique())
    for k, ((iteration, run), group) in enumerate(measured.groupby(["iteration", "run"], sort=True)):
        group = group.sort_values("step")
        steps = (int(iteration) - 1) * T + group["step"].to_numpy()
        values = group[column].astype(float)
        color = f"C{k % 10}"  # one colour per (iteration, run)
        ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
        smooth = values.rolling(window, min_periods=1, center=True).mean()
        ax.plot(steps, smooth, color=color, linewidth=1.8, label=f"iteration {int(iteration)}, run {int(run)}")
    for iteration in iterations[1:]:
        ax.axvline((iteration - 1) * T + 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel(f"global RL step (iteration i starts at (i - 1) × T + 1, T = {T})")
    ax.set_ylabel(label_of(column))
    ax.set_title(f"{label_of(column)} during WARP (faint: raw, bold: rolling mean of {window})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(runs) * len(iterations) > 4 else 1)
    return ax


# ----------------------------------------------------------------------------- bars per policy


def plot_bars(table: pd.DataFrame, columns: str | Sequence[str], ax=None, names: str | None = None):
    """Grouped bars of test-set statistics, one group per policy (a row of `table`), one bar per
    column; a `<column>_ci95` column, when present, gives the error bar. Policy names come from the
    `names` column, else a `policy` or `label` column, else the index."""
    columns = [columns] if isinstance(columns, str) else list(columns)
    if not columns:
        raise ValueError("columns must name at least 1 column")
    _require(table, columns, "table")
    if table.empty:
        raise ValueError("table must hold at least 1 row")
    ax = _axes(ax)
    if names is None:
        names = next((c for c in ("policy", "label") if c in table.columns), None)
    policies = [str(v) for v in (table[names] if names is not None else table.index)]
    positions = np.arange(len(table))
    width = 0.8 / len(columns)
    for k, column in enumerate(columns):
        errors = table[f"{column}_ci95"].to_numpy(dtype=float) if f"{column}_ci95" in table.columns else None
        bars = ax.bar(positions + (k - (len(columns) - 1) / 2) * width, table[column].to_numpy(dtype=float),
                      width=width, yerr=errors, capsize=3, label=label_of(column), color=f"C{k % 10}")
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    ax.set_xticks(positions, policies, rotation=20 if max(map(len, policies)) > 8 else 0,
                  ha="right" if max(map(len, policies)) > 8 else "center")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(label_of(columns[0]) if len(columns) == 1 else "value")
    ax.set_title("Test-set statistics per policy" + (" (error bars: 95% CI)"
                 if any(f"{c}_ci95" in table.columns for c in columns) else ""))
    ax.grid(axis="y", alpha=0.3)
    if len(columns) > 1:
        ax.legend(fontsize=8)
    return ax


def plot_token_shift(shift: pd.DataFrame, ax=None, top: int = 12, names: tuple[str, str] = ("final", "SFT")):
    """Horizontal bars of textdiff.token_shift's table: its `top` most-raised tokens (green) and
    `top` most-suppressed (red), largest log ratio at the top. names: (after, before)."""
    _require(shift, ["token", "log ratio"], "shift")
    if shift.empty:
        raise ValueError("shift must hold at least 1 row (no token was seen min_count times)")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an integer >= 1, got {top!r}")
    ax = _axes(ax)
    shown = pd.concat([shift.head(top), shift.tail(top)]).drop_duplicates("token")
    ratios = shown["log ratio"].to_numpy(dtype=float)
    ax.barh(shown["token"].astype(str), ratios, color=np.where(ratios > 0, "tab:green", "tab:red"))
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    after, before = names
    ax.set(xlabel=f"log(freq {after} / freq {before})",
           title="Words RL made more (green) and less (red) frequent")
    return ax


# ----------------------------------------------------------------------------- studies


def plot_study_curves(metrics_by_label: dict[str, pd.DataFrame], column: str, ax=None,
                      window: int | None = None, highlight: str | None = None):
    """One curve per run of a study (e.g. mu = 0.01, 0.05, 0.1): `column` averaged over the M runs
    at each global step where it was measured, smoothed by a centred rolling mean (window ~ a tenth
    of the points unless given). With
    `highlight`, that label is drawn bold and the others faint (the slider's selected run)."""
    if not metrics_by_label:
        raise ValueError("metrics_by_label must hold at least 1 run")
    ax = _axes(ax)
    for k, (label, metrics) in enumerate(metrics_by_label.items()):
        _require(metrics, ["iteration", "run", "step", column], f"metrics of {label!r}")
        T = int(metrics["step"].max())
        steps = (metrics["iteration"].astype(int) - 1) * T + metrics["step"].astype(int)
        # over the M runs of each step; steps where the column was not measured are left out
        mean = metrics[column].astype(float).groupby(steps).mean().dropna()
        smooth = mean.rolling(int(window or max(1, round(len(mean) / 10))), min_periods=1, center=True).mean()
        faint = highlight is not None and label != highlight
        ax.plot(smooth.index, smooth.to_numpy(), color=f"C{k % 10}", label=str(label),
                linewidth=0.9 if faint else 2.2, alpha=0.35 if faint else 1.0)
    ax.set_xlabel("RL step")
    ax.set_ylabel(label_of(column))
    ax.set_title(f"{label_of(column)} during training (mean over runs, rolling mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
