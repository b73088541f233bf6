"""InterCode-SQL against the released code: the figures in docs/intercode_sql.md ("Fidelity").

    python benchmarks/intercode_sql_fidelity.py [--data DIR] [--server-folder DIR] [--skip-expert]

1. Reward: InterCode's logged GPT-4 runs (gpt-4_multiturn_10_turns.json): each run's last query is run
   here and scored under `iou` and `intercode`; mean reward, number of 1.0 scores, and agreement with the
   reward the log recorded for that query (InterCode's own scoring).
2. Observations: every logged (action, observation) pair replayed here; how many texts are identical.
3. Turn limit: mean over the log of the last query's reward ("latest") vs 0 for runs that never reached 1.
4. Exclusions and expert data: tasks per split with and without UNDETERMINED_GOLD, and the expert
   trajectories (gpt4+gold) each split and reward gives.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import yaml

from hpl.envs.base import make_env
from hpl.intercode import tasks as task_module
from hpl.intercode.actions import format_sql_action
from hpl.intercode.expert import expert_trajectories
from hpl.intercode.reward import score
from hpl.intercode.server import PrivateServer
from hpl.mirror import PROJECT_ROOT, benchmark_mirror


def default_data_dir() -> Path | None:
    config = PROJECT_ROOT / "config" / "config.yaml"
    configured = (yaml.safe_load(config.read_text()) or {}).get("data_mirror") if config.exists() else None
    return benchmark_mirror(configured, "intercode_sql")


def _summary(values: list[float]) -> dict:
    return {"n": len(values), "mean": round(sum(values) / max(len(values), 1), 4), "ones": values.count(1.0)}


def gpt4_rewards(env, log: dict, ids: list[str]) -> dict:
    """Last logged query of each run, scored here under both rewards, and compared with the log."""
    scores = {"iou": [], "intercode": []}
    agree = Counter()
    for task_id in ids:
        actions = log[task_id]["turn_history"]["actions"]
        logged = log[task_id]["turn_history"]["rewards"]
        if not actions:
            continue
        env.reset(task_id)
        env.step(format_sql_action(actions[-1]))
        gold = env.gold_rows(task_id)
        for kind in scores:
            value = score(env.snapshot().last_rows, gold, kind)
            scores[kind].append(value)
            agree[kind] += abs(value - logged[-1]) < 1e-9
    return {kind: {**_summary(values), "agrees_with_log": agree[kind]} for kind, values in scores.items()}


def observation_match(env, log: dict, ids: list[str]) -> dict:
    """Logged observations reproduced here, untruncated (the log holds InterCode's raw text)."""
    env.observation_chars = 0
    same, total, kinds = 0, 0, Counter()
    try:
        for task_id in ids:
            history = log[task_id]["turn_history"]
            env.reset(task_id)
            for action, logged in zip(history["actions"], history["observations"]):
                observation = env.step(format_sql_action(action)).observation.rstrip("\n")
                total += 1
                if observation == str(logged):
                    same += 1
                elif "b'" in str(logged):
                    kinds["driver prints bytes (mysql-connector)"] += 1
                elif str(logged).startswith("Error") and observation.startswith("Error"):
                    kinds["both errors, other message"] += 1
                elif str(logged).startswith("Error") or observation.startswith("Error"):
                    kinds["error on one side only"] += 1
                else:
                    kinds["other rows"] += 1
    finally:
        env.observation_chars = 350
    return {"actions": total, "identical": same, "differences": dict(kinds)}


def truncation(env, log: dict, ids: list[str]) -> dict:
    """Runs that never reached 1 (InterCode's harness stopped at 1): their last query's reward is what
    `truncation_reward: latest` gives them; `zero` gives 0."""
    latest = []
    for task_id in ids:
        run = log[task_id]
        if run["summary"]["max_reward"] >= 1.0 or not run["turn_history"]["actions"]:
            continue
        env.reset(task_id)
        env.step(format_sql_action(run["turn_history"]["actions"][-1]))
        latest.append(score(env.snapshot().last_rows, env.gold_rows(task_id), "intercode"))
    return {"unsolved_runs": len(latest), "sum_latest": round(sum(latest), 2)}


def split_sizes(data_dir: Path) -> dict:
    tasks = task_module.load_tasks(data_dir)
    sizes = {}
    for kind in task_module.SPLIT_KINDS:
        after = task_module.make_split(tasks, kind)
        with mock.patch.dict(task_module.UNDETERMINED_GOLD, clear=True):
            before = task_module.make_split(tasks, kind)
        sizes[kind] = {
            "before": {"train": len(before.train), "test": len(before.test)},
            "after": {"train": len(after.train), "test": len(after.test)},
            "removed_from_train": sorted(set(before.train) - set(after.train), key=int),
            "test_databases_same": before.test_databases == after.test_databases,
        }
    return sizes


def expert_counts(env, data_dir: Path) -> dict:
    counts = {}
    for kind in task_module.SPLIT_KINDS:
        env.split = task_module.make_split(list(env.tasks.values()), kind)
        for reward in ("iou", "intercode"):
            env.reward_kind = reward
            _, card = expert_trajectories(env, source="gpt4+gold")
            counts[f"{kind}/{reward}"] = {
                k: card[k] for k in ("train_tasks", "gpt4_kept", "gold_kept", "total", "gpt4_failed_replay")
            }
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--server-folder", type=Path, default=None)
    parser.add_argument("--skip-expert", action="store_true")
    args = parser.parse_args()
    log = json.loads((args.data / task_module.GPT4_LOG_FILE).read_text())
    folder = args.server_folder or Path(tempfile.mkdtemp(prefix="fidelity-"))
    with PrivateServer(folder, args.data / task_module.DUMP_FILE) as server:
        env = make_env("intercode_sql", data_dir=args.data, server=server)
        valid = [t for t in env.tasks if env.tasks[t].gold_valid]
        scoreable = [t for t in env.tasks if env.tasks[t].scoreable]
        paper_test = [str(i) for i in range(200)]
        report = {
            "gpt4_last_query": {
                "valid_gold": gpt4_rewards(env, log, valid),
                "scoreable": gpt4_rewards(env, log, scoreable),
                "paper_test": gpt4_rewards(env, log, paper_test),
            },
            "observations": observation_match(env, log, valid),
            "truncation": truncation(env, log, valid),
            "splits": split_sizes(args.data),
        }
        if not args.skip_expert:
            report["expert"] = expert_counts(env, args.data)
        env.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
