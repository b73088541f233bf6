"""Paper Table 5: what each method costs (external LLM, number of LLM calls, generation and training time).

Numbers come from files the pipeline already writes:

- **Times** from Snakemake `benchmark:` files (TSV, columns s, h:m:s, max_rss, ..., cpu_time). A file's
  time is its wall-clock column `s`; when a rule is benchmarked with `repeat(...)` the file has one row
  per repetition of the *same* job, so the file counts the mean of its rows (one run's cost). A method's
  generation (training) time is the sum over its generation (training) files.
- **LLM calls** from the usage JSON of the job that asked the external LLM (`hpl.llm.LLMUsage.as_dict()`):
  `requests` (fresh calls + cache hits, i.e. the answers the dataset needed, so a rerun served from the cache
  reports the same number), or `calls + cache_hits` when `requests` is absent, or `calls`.

Which files belong to which method (`table5_inputs`, for results/benchmarks/{bench}/{model}/...; explore/,
segments/ and groups/ lie in the folder ref{r}/ of the seed's pi_ref): every job whose output the method's
training consumes and that is not shared by *all* methods. The SFT model
pi_ref is the starting point of every method and is counted only in the SFT row, as in the paper.

| method | generation | training |
|---|---|---|
| sft | none (expert data is the benchmark's) | sft/seed{s}.tsv |
| rft | explore/rft_samples.tsv | rft/seed{s}.tsv (+ sft/seed{s}.tsv when RFT copied SFT's model, below) |
| eto | explore/trajectories.tsv (pi_ref's trajectories, the rejected side) | eto/seed{s}.tsv |
| ipr | explore/step_rollouts.tsv (step-level MC rollouts) | ipr/seed{s}.tsv |
| hpl-<seg>[-...] | explore/trajectories.tsv + explore/step_rollouts.tsv + segments/<seg>.tsv + groups/<seg>.tsv | <method>/seed{s}.tsv |

When pi_ref had no successful sample, RFT's data, settings and seed are SFT's and the RFT job copies SFT's
model of the seed instead of training it again (`hpl.sft.copy_sft_model`; its train_metrics.json names the
source): the RFT row then counts that SFT training as its own, since it is the training RFT needed.

With `expert_source: teacher` the expert data cost LLM calls too: the SFT row (the start of every method,
as above) then names the teacher model and counts its calls (results/{bench}/expert/usage.json) and the
expert job's time (expert.tsv) as generation.

HPL trains on trajectory-, step- and group-level pairs, so its generation time includes all three data
sources; the paper's Table 5 lists for IPR and HPL only "the step-level part" / "the group-level part", so
the component times are also returned (column `generation_parts`) for a like-for-like comparison. Only the
semantic segmenter asks an external LLM; its usage file is results/{bench}/{model}/ref{r}/segments/semantic_usage.json.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

TABLE5_COLUMNS = [
    "Method",
    "External LLM",
    "# LLM calls",
    "Gen time",
    "Train time",
    "gen_minutes",
    "train_minutes",
    "generation_parts",
]


def benchmark_seconds(path: str | Path) -> float:
    """Wall-clock seconds of one Snakemake benchmark file: the mean of its `s` column (rows = repeats)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no rows or no 's' column)")
    try:
        values = [float(row["s"]) for row in rows]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: unreadable 's' value ({error})") from error
    return sum(values) / len(values)


def llm_calls(path: str | Path) -> int:
    """Number of LLM calls recorded in one usage JSON (see the module docstring for which key counts)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LLM usage file not found: {path}")
    usage = json.loads(path.read_text())
    if "requests" in usage:
        return int(usage["requests"])
    if "calls" in usage:
        return int(usage["calls"]) + int(usage.get("cache_hits", 0))
    raise ValueError(f"{path}: no 'requests' or 'calls' key in LLM usage file")


def format_duration(seconds: float) -> str:
    """The paper's style: "0", "45s" (under a minute), "18min", "1h 7min" (minutes rounded)."""
    if seconds <= 0:
        return "0"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}min" if hours else f"{minutes}min"


def table5(methods: Mapping[str, Mapping]) -> pd.DataFrame:
    """Paper Table 5, one row per method in the mapping's order.

    `methods` maps a row label to {"generation": [benchmark TSV paths], "training": [benchmark TSV paths],
    "llm_usage": [usage JSON paths], "llm": external model name or None} (missing keys = empty / None).
    Columns: Method; External LLM ("✓ (<name>)" or "✗"); # LLM calls (sum over the usage files, 0 without
    any); Gen time and Train time formatted as in the paper (format_duration); gen_minutes and
    train_minutes (float minutes, the numbers to compare); generation_parts ("file stem: minutes", for
    the per-part comparison the paper makes). A missing or malformed file raises an error naming it.
    """
    rows = []
    for method, spec in methods.items():
        unknown = set(spec) - {
            "generation",
            "training",
            "llm_usage",
            "llm",
            "copied_metrics",
            "copied_training",
        }
        if unknown:
            raise ValueError(f"table5: method {method!r} has unknown keys {sorted(unknown)}")
        generation = {str(p): benchmark_seconds(p) for p in spec.get("generation", [])}
        training = sum(benchmark_seconds(p) for p in spec.get("training", []))
        if spec.get("copied_metrics") and _was_copied(spec["copied_metrics"]):
            training += sum(benchmark_seconds(p) for p in spec.get("copied_training", []))
        calls = sum(llm_calls(p) for p in spec.get("llm_usage", []))
        llm = spec.get("llm")
        gen_total = sum(generation.values())
        rows.append(
            {
                "Method": method,
                "External LLM": f"✓ ({llm})" if llm else "✗",
                "# LLM calls": calls,
                "Gen time": format_duration(gen_total),
                "Train time": format_duration(training),
                "gen_minutes": gen_total / 60,
                "train_minutes": training / 60,
                "generation_parts": "; ".join(
                    f"{Path(p).parent.name}/{Path(p).stem}: {s / 60:.2f}" for p, s in generation.items()
                ),
            }
        )
    return pd.DataFrame(rows, columns=TABLE5_COLUMNS)


def _was_copied(metrics_path: str | Path) -> bool:
    """Whether the model of `metrics_path` (a train_metrics.json) was copied rather than trained."""
    path = Path(metrics_path)
    if not path.is_file():
        raise FileNotFoundError(f"training metrics not found: {path}")
    return "copied_from" in json.loads(path.read_text())


def hpl_segmenter(method: str) -> str:
    """The segmenter of an HPL method name: "hpl-fixed_n-static" -> "fixed_n"."""
    parts = method.split("-")
    if parts[0] != "hpl" or len(parts) < 2 or not parts[1]:
        raise ValueError(f"not an HPL method name: {method!r}")
    return parts[1]


def table5_inputs(
    bench: str,
    model: str,
    methods: Sequence[str],
    seed: int = 0,
    reference_seed: int | None = None,
    llm_model: str | None = None,
    root: str | Path = "results",
    shards_of: Callable[[Path], Sequence[str | Path]] = lambda path: [],
    teacher_model: str | None = None,
) -> dict[str, dict]:
    """The `table5` mapping for the pipeline's file layout (module docstring), one training seed.

    `reference_seed` is the SFT seed whose pi_ref generated that seed's training data (its folder
    ref{reference_seed}/; default: `seed` itself, as with the config's `reference_seed: each`).

    `llm_model` names the external LLM of the semantic segmenter; it is required when a semantic method
    is listed, since Table 5 names the model. `teacher_model` names the teacher LLM when the expert data
    came from one (its calls and time go to the SFT row). `shards_of` maps an exploration job's benchmark
    file to its shards' benchmark files (hpl.sharding.planned_shards; none when it ran unsharded): their
    times add to the gathering job's own.
    """
    root = Path(root)
    bench_dir = root / "benchmarks" / bench / model
    ref = seed if reference_seed is None else reference_seed
    ref_dir = f"ref{ref}"
    explore = bench_dir / ref_dir / "explore"
    out: dict[str, dict] = {}
    for method in methods:
        training = [bench_dir / method / f"seed{seed}.tsv"]
        spec: dict = {"generation": [], "training": training, "llm_usage": [], "llm": None}
        if method == "sft":
            if teacher_model:
                spec["generation"] = [root / "benchmarks" / bench / "expert.tsv"]
                spec["llm"] = teacher_model
                spec["llm_usage"] = [root / bench / "expert" / "usage.json"]
        elif method == "rft":
            spec["generation"] = [explore / "rft_samples.tsv"]
            spec["copied_metrics"] = (
                root / bench / model / "train" / "rft" / f"seed{seed}" / "train_metrics.json"
            )
            spec["copied_training"] = [bench_dir / "sft" / f"seed{seed}.tsv"]
        elif method == "eto":
            spec["generation"] = [explore / "trajectories.tsv"]
        elif method == "ipr":
            spec["generation"] = [explore / "step_rollouts.tsv"]
        elif method.startswith("hpl-"):
            segmenter = hpl_segmenter(method)
            spec["generation"] = [
                explore / "trajectories.tsv",
                explore / "step_rollouts.tsv",
                bench_dir / ref_dir / "segments" / f"{segmenter}.tsv",
                bench_dir / ref_dir / "groups" / f"{segmenter}.tsv",
            ]
            if segmenter == "semantic":
                if not llm_model:
                    raise ValueError(f"{method}: name the semantic segmenter's LLM (llm_model=...)")
                spec["llm"] = llm_model
                spec["llm_usage"] = [root / bench / model / ref_dir / "segments" / f"{segmenter}_usage.json"]
        else:
            raise ValueError(f"table5: no resource files known for method {method!r}")
        spec["generation"] = [
            p
            for path in spec["generation"]
            for p in [path, *(map(Path, shards_of(path)) if path.parent == explore else [])]
        ]
        out[method] = spec
    return out
