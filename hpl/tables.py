"""The paper's tables from per-episode evaluation rows.

Each evaluation file (`results/{bench}/{model}/eval/{method}/seed{seed}/{split}.jsonl`, one row per
episode) gives one number per metric; a table cell is the mean over the configured seeds, written
"mean ± std" (sample standard deviation) when there is more than one seed and plain "mean" for one.
Scores are percentages with two decimals, as in the paper. A cell whose benchmark was not run is empty,
never zero, and so is the Average unless all six cells of its row are filled.
A long-format companion (`*_long.csv`: model, method, column, mean, std, n) keeps the raw numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

# (column title, benchmark, split, metric) in the paper's order
TABLE1_COLUMNS: list[tuple[str, str, str, str]] = [
    ("ALFWorld Seen", "alfworld", "seen", "success"),
    ("ALFWorld Unseen", "alfworld", "unseen", "success"),
    ("WebShop Avg. Reward", "webshop", "test", "avg_reward"),
    ("WebShop Success", "webshop", "test", "success"),
    ("InterCode-SQL Avg. Reward", "intercode_sql", "test", "avg_reward"),
    ("InterCode-SQL Success", "intercode_sql", "test", "success"),
]
ALFWORLD_TYPES = ["Pick", "Clean", "Heat", "Cool", "Examine", "Pick2"]


@dataclass(frozen=True)
class EvalRun:
    """One evaluation file and what it is an evaluation of."""

    model: str
    method: str
    seed: int
    bench: str
    split: str
    episodes: tuple[dict, ...]


def episode_metrics(episodes: Iterable[dict]) -> dict[str, float]:
    """Success rate and average reward of a set of episodes, in percent."""
    episodes = list(episodes)
    if not episodes:
        raise ValueError("no episodes to score")
    rewards = [float(e["reward"]) for e in episodes]
    return {
        "success": 100.0 * sum(r >= 1.0 for r in rewards) / len(rewards),
        "avg_reward": 100.0 * sum(rewards) / len(rewards),
        "episodes": float(len(rewards)),
    }


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std (None for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def format_cell(values: Sequence[float]) -> str:
    if not values:
        return ""
    mean, std = mean_std(values)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _rows(runs: Iterable[EvalRun]) -> dict[tuple[str, str], list[EvalRun]]:
    grouped: dict[tuple[str, str], list[EvalRun]] = {}
    for run in runs:
        grouped.setdefault((run.model, run.method), []).append(run)
    return grouped


def _column_values(
    runs: list[EvalRun], bench: str, split: str, metric: str, task_type: str | None = None
) -> dict[int, float]:
    """The metric per seed, over the runs of one (bench, split), optionally one ALFWorld task type."""
    values = {}
    for run in runs:
        if run.bench != bench or run.split != split:
            continue
        episodes = [e for e in run.episodes if task_type is None or e.get("task_type") == task_type]
        if episodes:
            values[run.seed] = episode_metrics(episodes)[metric]
    return dict(sorted(values.items()))


def table1(runs: Iterable[EvalRun], order: Sequence[tuple[str, str]] | None = None):
    """(formatted table, long table) with the paper's Table 1 columns, one row per (model, method)."""
    grouped = _rows(runs)
    keys = list(order) if order else sorted(grouped)
    wide, long = [], []
    for model, method in keys:
        runs_here = grouped.get((model, method), [])
        row = {"Model": model, "Method": method}
        per_seed: dict[int, list[float]] = {}
        for title, bench, split, metric in TABLE1_COLUMNS:
            by_seed = _column_values(runs_here, bench, split, metric)
            values = list(by_seed.values())
            row[title] = format_cell(values)
            if values:
                mean, std = mean_std(values)
                long.append(
                    {
                        "Model": model,
                        "Method": method,
                        "Column": title,
                        "mean": mean,
                        "std": std,
                        "n": len(values),
                    }
                )
            for seed, value in by_seed.items():
                per_seed.setdefault(seed, []).append(value)
        # Average: per seed the mean of the six cells, then mean ± std over seeds; empty unless complete
        complete = [sum(v) / len(v) for v in per_seed.values() if len(v) == len(TABLE1_COLUMNS)]
        row["Average"] = format_cell(complete) if complete and len(complete) == len(per_seed) else ""
        wide.append(row)
    return pd.DataFrame(wide), pd.DataFrame(long, columns=["Model", "Method", "Column", "mean", "std", "n"])


def type_table(runs: Iterable[EvalRun], split: str, order: Sequence[tuple[str, str]] | None = None):
    """ALFWorld success per task type on one split (paper Tables 6 and 7), plus the overall column."""
    grouped = _rows(runs)
    keys = list(order) if order else sorted(grouped)
    wide = []
    for model, method in keys:
        runs_here = grouped.get((model, method), [])
        row = {"Model": model, "Method": method}
        for task_type in ALFWORLD_TYPES:
            row[task_type] = format_cell(
                list(_column_values(runs_here, "alfworld", split, "success", task_type).values())
            )
        row["All"] = format_cell(list(_column_values(runs_here, "alfworld", split, "success").values()))
        wide.append(row)
    return pd.DataFrame(wide)
