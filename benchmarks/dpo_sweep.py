"""DPO settings sweep: which learning rates and betas improve pi_ref rather than destroy it (issue 16).

From a finished run's pi_ref and preference pairs, one DPO training per (lr, beta, seed) with the
method's levels (ETO: trajectory pairs; IPR: step pairs + NLL), each evaluated greedily on the same test
tasks as pi_ref itself (the first row, lr 0). One JSON row per point is appended to `--out` (a killed
sweep resumes); `--table` prints them as the markdown table docs/performance.md carries.

    python benchmarks/dpo_sweep.py webshop --run . --method eto --lr 5e-5 2e-4 5e-4 --eval-tasks 50
    python benchmarks/dpo_sweep.py --table --out results/dpo_sweep.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_curve import evaluate, markdown_table, run  # noqa: E402

from hpl.benchmarks import prepare_benchmark  # noqa: E402
from hpl.dpo import train_dpo  # noqa: E402
from hpl.io import read_jsonl  # noqa: E402
from hpl.mirror import PROJECT_ROOT  # noqa: E402
from hpl.settings import GenerationSettings, reference_seed  # noqa: E402

COLUMNS = (
    "bench",
    "method",
    "lr",
    "beta",
    "seed",
    "pairs",
    "train_s",
    "avg_reward",
    "success",
    "invalid",
    "turns",
)


def _rows(path: str) -> list[dict]:
    return read_jsonl(path) if Path(path).exists() else []


def _append(path: str, row: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def sweep(args: argparse.Namespace, config: dict) -> None:
    bench, run = args.bench, Path(args.run)
    spec = config["method_specs"][args.method]
    settings = dict(config[bench])
    model_dir = run / "results" / bench / config["models"][0]
    ref_seed = reference_seed(config, config["seeds"][0])  # the first seed's pi_ref and its pairs
    ref = model_dir / "train" / "sft" / f"seed{ref_seed}"
    pairs = {
        level: read_jsonl(model_dir / f"ref{ref_seed}" / "pairs" / f"{level}.jsonl")
        for level in spec["levels"]
    }
    manifest = prepare_benchmark(bench, Path(args.work) / bench / "data", config["data_mirror"], settings)
    data_dir = Path(manifest["data_dir"])
    # the action mode the pipeline's evaluation of this benchmark uses
    generation = {**config["generation"], "actions": GenerationSettings.from_config(config, bench).actions}
    done = {(r["bench"], r["method"], r["lr"], r["beta"], r["seed"]) for r in _rows(args.out)}
    if (bench, "sft", 0.0, 0.0, 0) not in done:  # pi_ref under the same protocol: the row to beat
        scores = evaluate(bench, data_dir, settings, ref, generation, args.eval_tasks)
        row = {"bench": bench, "method": "sft", "lr": 0.0, "beta": 0.0, "seed": 0, "pairs": 0, "train_s": 0.0}
        _append(args.out, {**row, **scores})
    for lr, beta, seed in itertools.product(args.lr, args.beta, args.seeds):
        if (bench, args.method, lr, beta, seed) in done:
            continue
        out = Path(args.work) / bench / f"{args.method}-lr{lr}-beta{beta}-seed{seed}"
        hp = {**config["training"]["dpo"], "lr": lr, "beta": beta, "logging_steps": 20}
        started = time.time()
        train_dpo(str(ref), pairs, str(out), hp, spec["levels"], seed=seed)
        train_s = round(time.time() - started, 1)
        scores = evaluate(bench, data_dir, settings, out, generation, args.eval_tasks)
        row = {"bench": bench, "method": args.method, "lr": lr, "beta": beta, "seed": seed}
        _append(args.out, {**row, "pairs": sum(len(p) for p in pairs.values()), "train_s": train_s, **scores})


def table(path: str) -> str:
    return markdown_table(_rows(path), COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", nargs="?")
    parser.add_argument("--run", default=".", help="the finished run's working directory (its results/)")
    parser.add_argument("--method", default="eto", help="a DPO method of method_specs (eto, ipr)")
    parser.add_argument("--lr", type=float, nargs="+", default=[5e-5, 2e-4, 5e-4])
    parser.add_argument("--beta", type=float, nargs="+", default=[0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eval-tasks", type=int, default=50)
    parser.add_argument("--config", default=str(PROJECT_ROOT / "config" / "config.yaml"))
    parser.add_argument("--work", default="/tmp/hpl-dpo-sweep", help="benchmark data and trained models")
    parser.add_argument("--out", default="results/dpo_sweep.jsonl")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="print the rows of --out as a markdown table")
    run(parser, table, sweep)


if __name__ == "__main__":
    main()
