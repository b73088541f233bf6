"""The paper's tables from per-episode evaluation rows.

Each evaluation file (`results/{bench}/{model}/eval/{method}/seed{seed}/{split}.jsonl`, one row per
episode) gives one number per metric; a table cell is the mean over the configured seeds, written
"mean ± std" (sample standard deviation) when there is more than one seed and plain "mean" for one.
Scores are percentages with two decimals, as in the paper. A cell whose benchmark was not run is empty,
never zero, and so is the Average unless all six cells of its row are filled.
A long-format companion (`*_long.csv`: model, method, column, mean, std, n, and the per-seed seeds and values)
keeps the raw numbers, and `versus_baseline` says which methods differ from SFT by more than one seed std
and by how much seed by seed (`table1_vs_sft.csv`).
"""

from __future__ import annotations

import re
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
LONG_COLUMNS = ["Model", "Method", "Column", "mean", "std", "n", "seeds", "values"]
VERSUS_COLUMNS = [
    "Model",
    "Method",
    "Column",
    "mean",
    "baseline",
    "difference",
    "larger_std",
    "beyond_one_std",
    "paired_difference",
    "paired_std",
    "seeds_better",
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


def action_modes(runs: Iterable[EvalRun]) -> str:
    """How the rows' actions were decoded (generation.actions): one mode, or the mode per benchmark.

    Rows written before the mode was recorded were free generation."""
    modes: dict[str, set[str]] = {}
    for run in runs:
        for episode in run.episodes:
            modes.setdefault(run.bench, set()).add(episode.get("action_mode", "free"))
    flat = {mode for bench_modes in modes.values() for mode in bench_modes}
    if len(flat) <= 1:
        return next(iter(flat), "")
    return "; ".join(f"{bench}: {'/'.join(sorted(m))}" for bench, m in sorted(modes.items()))


def table1(runs: Iterable[EvalRun], order: Sequence[tuple[str, str]] | None = None):
    """(formatted table, long table) with the paper's Table 1 columns, one row per (model, method)."""
    grouped = _rows(runs)
    keys = list(order) if order else sorted(grouped)
    wide, long = [], []
    for model, method in keys:
        runs_here = grouped.get((model, method), [])
        row = {"Model": model, "Method": method, "Actions": action_modes(runs_here)}
        per_seed: dict[int, list[float]] = {}
        for title, bench, split, metric in TABLE1_COLUMNS:
            by_seed = _column_values(runs_here, bench, split, metric)
            values = list(by_seed.values())
            row[title] = format_cell(values)
            if values:
                long.append(_long_row(model, method, title, by_seed))
            for seed, value in by_seed.items():
                per_seed.setdefault(seed, []).append(value)
        # Average: per seed the mean of the six cells, then mean ± std over seeds; empty unless complete
        complete = {s: sum(v) / len(v) for s, v in per_seed.items() if len(v) == len(TABLE1_COLUMNS)}
        row["Average"] = (
            format_cell(list(complete.values())) if complete and len(complete) == len(per_seed) else ""
        )
        if row["Average"]:
            long.append(_long_row(model, method, "Average", complete))
        wide.append(row)
    return pd.DataFrame(wide), pd.DataFrame(long, columns=LONG_COLUMNS)


def _long_row(model: str, method: str, column: str, by_seed: dict[int, float]) -> dict:
    """One cell in long format: mean, std and count over seeds, and the per-seed values themselves."""
    mean, std = mean_std(list(by_seed.values()))
    return {
        "Model": model,
        "Method": method,
        "Column": column,
        "mean": mean,
        "std": std,
        "n": len(by_seed),
        "seeds": " ".join(str(seed) for seed in by_seed),
        "values": " ".join(f"{value:.4f}" for value in by_seed.values()),
    }


def _by_seed(record: dict) -> dict[int, float]:
    seeds, values = str(record["seeds"]).split(), str(record["values"]).split()
    return {int(seed): float(value) for seed, value in zip(seeds, values, strict=True)}


def paired(method: dict[int, float], baseline: dict[int, float]) -> tuple[float, float | None, str] | None:
    """Seed by seed, method minus baseline over the seeds both have: (mean, sample std, "better/n").
    With `reference_seed: each` seed s of a preference method starts from SFT seed s, so this difference
    removes the spread SFT seeds add to both rows."""
    common = sorted(method.keys() & baseline.keys())
    if not common:
        return None
    differences = [method[seed] - baseline[seed] for seed in common]
    mean, std = mean_std(differences)
    return mean, std, f"{sum(d > 0 for d in differences)}/{len(differences)}"


def versus_baseline(long: pd.DataFrame, baseline: str = "sft") -> pd.DataFrame:
    """Each method's cells against the baseline method's (same model and column): the difference of the
    means, the larger of the two seed stds, and whether the difference exceeds it ("beyond one std"; empty
    with a single seed, where no spread was measured); and the paired difference seed by seed (`paired`):
    its mean, its std over seeds and in how many seeds the method was above."""
    rows = []
    for record in long.to_dict("records"):
        if record["Method"] == baseline:
            continue
        base = long[
            (long["Model"] == record["Model"])
            & (long["Method"] == baseline)
            & (long["Column"] == record["Column"])
        ]
        if base.empty:
            continue
        other = base.iloc[0]
        stds = [s for s in (record["std"], other["std"]) if s is not None and not pd.isna(s)]
        larger = max(stds) if len(stds) == 2 else None
        difference = record["mean"] - other["mean"]
        paired_mean, paired_std, better = paired(_by_seed(record), _by_seed(other.to_dict())) or (
            None,
            None,
            "",
        )
        rows.append(
            {
                "Model": record["Model"],
                "Method": record["Method"],
                "Column": record["Column"],
                "mean": record["mean"],
                "baseline": other["mean"],
                "difference": difference,
                "larger_std": larger,
                "beyond_one_std": None if larger is None else abs(difference) > larger,
                "paired_difference": paired_mean,
                "paired_std": paired_std,
                "seeds_better": better,
            }
        )
    return pd.DataFrame(rows, columns=VERSUS_COLUMNS)


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


# --- Ablations (paper Table 2, Figure 5) and the curriculum phases (Figure 4) ---------------------------

# (row label, method suffix) of paper Table 2; the full dual-layer curriculum is the plain HPL method
CURRICULUM_VARIANTS: list[tuple[str, str]] = [
    ("Full (dual-layer)", ""),
    ("Static", "-static"),
    ("Length-only", "-length"),
    ("Difficulty-only", "-difficulty"),
]
# (row label, method suffix) of paper Figure 5: the hierarchical loss without one of its three terms
LOSS_VARIANTS: list[tuple[str, str]] = [
    ("Full", ""),
    ("w/o trajectory", "-no_traj"),
    ("w/o step", "-no_step"),
    ("w/o group", "-no_group"),
]
PHASES = (1, 2, 3)


def _variant_table(runs: Iterable[EvalRun], rows: Sequence[tuple[str, str]], variants):
    """Table 1 columns for each (model, base method) x variant, with a Variant column after Method."""
    runs = list(runs)
    order, labels = [], {}
    for model, base in rows:
        for label, suffix in variants:
            order.append((model, base + suffix))
            labels[(model, base + suffix)] = label
    wide, long = table1(runs, order)
    for frame in (wide, long):
        frame.insert(
            2, "Variant", [labels[(m, meth)] for m, meth in zip(frame["Model"], frame["Method"], strict=True)]
        )
    return wide, long


def table2(runs: Iterable[EvalRun], rows: Sequence[tuple[str, str]]):
    """Paper Table 2, the curriculum ablation: (formatted table, long table).

    `rows` lists (model, HPL method), e.g. [("qwen1.5b", "hpl-semantic")]; each gives four rows in the
    paper's order, labelled in the Variant column: Full (dual-layer) = the method itself, Static =
    "<method>-static", Length-only = "<method>-length", Difficulty-only = "<method>-difficulty".
    Columns, cells and the Average are those of Table 1 (the paper's Table 2 uses the same columns).
    """
    return _variant_table(runs, rows, CURRICULUM_VARIANTS)


def loss_ablation_table(runs: Iterable[EvalRun], base_method: str, models: Sequence[str] | None = None):
    """The loss ablation behind paper Figure 5: (formatted table, long table).

    Per model (default: every model with a run of `base_method` or one of its variants, sorted) four rows
    labelled Full, w/o trajectory, w/o step, w/o group = `base_method` + "", "-no_traj", "-no_step",
    "-no_group"; Table 1 columns. Cells of benchmarks not run are empty and absent from the long table.
    """
    runs = list(runs)
    names = {base_method + suffix for _, suffix in LOSS_VARIANTS}
    if models is None:
        models = sorted({run.model for run in runs if run.method in names})
    return _variant_table(runs, [(model, base_method) for model in models], LOSS_VARIANTS)


def phase_table(runs: Iterable[EvalRun], method: str) -> pd.DataFrame:
    """ALFWorld success after each curriculum phase (paper Figure 4), as a long table.

    Phase k is the evaluation of method "<method>.phase<k>" (k = 1, 2, 3). One row per
    (model, phase, split, task_type) with task_type one of ALFWORLD_TYPES or "All" (every episode of the
    split): mean and sample std over seeds of the success rate in percent (std NaN for one seed), n seeds.
    Combinations without episodes are left out.
    """
    grouped = _rows(runs)
    models = sorted({model for model, meth in grouped if meth in {f"{method}.phase{k}" for k in PHASES}})
    rows = []
    for model in models:
        for phase in PHASES:
            runs_here = grouped.get((model, f"{method}.phase{phase}"), [])
            for split in ("seen", "unseen"):
                for task_type in ["All", *ALFWORLD_TYPES]:
                    by_seed = _column_values(
                        runs_here, "alfworld", split, "success", None if task_type == "All" else task_type
                    )
                    if not by_seed:
                        continue
                    mean, std = mean_std(list(by_seed.values()))
                    rows.append(
                        {
                            "model": model,
                            "phase": phase,
                            "split": split,
                            "task_type": task_type,
                            "mean": mean,
                            "std": float("nan") if std is None else std,
                            "n": len(by_seed),
                        }
                    )
    return pd.DataFrame(rows, columns=["model", "phase", "split", "task_type", "mean", "std", "n"])


_EVAL_PATH = re.compile(
    r"results/(?P<bench>[^/]+)/(?P<model>[^/]+)/eval/(?P<method>[^/]+)/seed(?P<seed>\d+)/(?P<split>[^/]+)\.jsonl$"
)


def load_runs(paths: Iterable[str]) -> list[EvalRun]:
    """EvalRuns from evaluation files named as the pipeline names them."""
    from hpl.io import read_jsonl

    runs = []
    for path in paths:
        m = _EVAL_PATH.search(str(path))
        if m is None:
            raise ValueError(f"not an evaluation file path: {path}")
        runs.append(
            EvalRun(m["model"], m["method"], int(m["seed"]), m["bench"], m["split"], tuple(read_jsonl(path)))
        )
    return runs
