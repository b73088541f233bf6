"""Paper Figures 4 and 5 as PNG files, each with a CSV of exactly the numbers it plots.

Inputs are the long tables of hpl.tables (`phase_table`, `loss_ablation_table(...)[1]`); a value that is
absent there (benchmark or phase not run) is absent from the figure, never drawn as zero. Error bars are
the sample std over seeds where there is more than one seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hpl.tables import ALFWORLD_TYPES, LOSS_VARIANTS, PHASES, TABLE1_COLUMNS  # noqa: E402


def _err(stds) -> list[float] | None:
    values = [0.0 if s is None or (isinstance(s, float) and math.isnan(s)) else float(s) for s in stds]
    return values if any(values) else None


def _save(fig, frame: pd.DataFrame, path_png, path_csv) -> None:
    for path in (path_png, path_csv):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path_png, dpi=150, bbox_inches="tight")
    plt.close(fig)
    frame.to_csv(path_csv, index=False)


def figure4(phase_df: pd.DataFrame, path_png, path_csv, model: str | None = None) -> pd.DataFrame:
    """ALFWorld success after each curriculum phase (`phase_table` output).

    Panel (a): overall success per phase, one line per (model, split). Panels (b), (c): success per task
    type per phase for `model` (default: the first model), seen and unseen. Returns the plotted rows
    (the CSV: phase_df's columns plus `panel`).
    """
    if phase_df.empty:
        raise ValueError("figure4: no phase results to plot")
    models = sorted(phase_df["model"].unique())
    model = model or models[0]
    overall = phase_df[phase_df["task_type"] == "All"].assign(panel="a")
    types = phase_df[(phase_df["model"] == model) & (phase_df["task_type"] != "All")]
    types = types.assign(panel=types["split"].map({"seen": "b", "unseen": "c"}))

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    colors = {name: f"C{i}" for i, name in enumerate(models)}
    for (name, split), rows in overall.groupby(["model", "split"], sort=True):
        rows = rows.sort_values("phase")
        axes[0].errorbar(
            rows["phase"],
            rows["mean"],
            yerr=_err(rows["std"]),
            marker="o" if split == "seen" else "s",
            capsize=3,
            color=colors[name],
            linestyle="-" if split == "seen" else "--",
            label=f"{name}, {split}",
        )
    axes[0].set_title("(a) Overall success per phase")
    for ax, split in zip(axes[1:], ["seen", "unseen"], strict=True):
        for task_type in ALFWORLD_TYPES:
            rows = types[(types["split"] == split) & (types["task_type"] == task_type)].sort_values("phase")
            if not rows.empty:
                ax.errorbar(
                    rows["phase"],
                    rows["mean"],
                    yerr=_err(rows["std"]),
                    marker="o",
                    capsize=3,
                    label=task_type,
                )
        ax.set_title(f"({'b' if split == 'seen' else 'c'}) {model}: success per task type, {split}")
    for ax in axes:
        ax.set_xticks(list(PHASES), [f"Phase {k}" for k in PHASES])
        ax.set_xlabel("Curriculum phase (checkpoint at its end)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("ALFWorld success rate (%)")
    fig.suptitle("Figure 4: ALFWorld success after each curriculum phase (mean ± std over seeds)")
    plotted = pd.concat([overall, types], ignore_index=True)
    _save(fig, plotted, path_png, path_csv)
    return plotted


def figure5(ablation_df: pd.DataFrame, path_png, path_csv) -> pd.DataFrame:
    """Loss ablation bars (long table of `loss_ablation_table`: Model, Variant, Column, mean, std, n).

    One panel per model; per Table 1 column that has any value, one bar per variant (Full, w/o trajectory,
    w/o step, w/o group). A missing cell leaves a gap. Returns the plotted rows (the CSV).
    """
    if ablation_df.empty:
        raise ValueError("figure5: no ablation results to plot")
    variants = [label for label, _ in LOSS_VARIANTS]
    columns = [title for title, *_ in TABLE1_COLUMNS if title in set(ablation_df["Column"])]
    models = sorted(ablation_df["Model"].unique())
    width = 0.8 / len(variants)
    fig, axes = plt.subplots(
        1, len(models), figsize=(max(5.0, 1.8 * len(columns)) * len(models), 4.2), squeeze=False, sharey=True
    )
    for ax, model in zip(axes[0], models, strict=True):
        here = ablation_df[ablation_df["Model"] == model]
        for i, variant in enumerate(variants):
            rows = here[here["Variant"] == variant]
            x = [columns.index(c) + (i - (len(variants) - 1) / 2) * width for c in rows["Column"]]
            if x:
                bars = ax.bar(
                    x, rows["mean"], width, yerr=_err(rows["std"]), capsize=2, color=f"C{i}", label=variant
                )
                # value labels: a real 0 shows "0.0", a missing cell shows nothing
                ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
        ax.set_xticks(range(len(columns)), [c.replace(" ", "\n", 1) for c in columns], fontsize=8)
        ax.set_title(model)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("Score (%): success rate or avg. reward")
    fig.suptitle("Figure 5: HPL loss ablation (full objective vs. without one DPO term)")
    plotted = ablation_df[ablation_df["Column"].isin(columns)].reset_index(drop=True)
    _save(fig, plotted, path_png, path_csv)
    return plotted
