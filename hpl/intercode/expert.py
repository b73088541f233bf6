"""Expert trajectories for InterCode-SQL's training tasks (the behaviour-cloning data D_e).

Two teachers:
- "gpt4": InterCode's own logged GPT-4 multi-turn runs (`gpt-4_multiturn_10_turns.json`). InterCode's
  harness stopped an episode as soon as an action scored 1, and its log records no thoughts and no submit.
  A run becomes a ReAct trajectory from its actions up to the first best-scoring one, followed by `submit`;
  thoughts are templated from each action (what it inspects, whether it fixes an error). Every candidate is
  *replayed through this environment* and kept only if its replays (3 by default) all score >= the
  threshold (1.0): the log's rewards came from another server and driver, so the replay decides, and the
  observations in the trajectory are this environment's own. Replays are repeated because MariaDB breaks
  ties at random: a GPT-4 query ending in ORDER BY count(*) LIMIT 1 over tied rows is right only sometimes
  (such runs are dropped; a rare one may still pass three times, so the GPT-4 count can vary by about one
  between builds).
- "gold": for training tasks GPT-4 did not solve, a demonstration that runs the gold query and submits
  (replayed and checked the same way). Tasks with invalid gold queries are not in any split.
- "schema_gold" (not InterCode's data; for a model trained from scratch): every training task as the
  schema discovery an agent needs on an unseen database, then the gold query: `SHOW TABLES`, `DESCRIBE`
  of each table the gold query names, the gold query, submit. No action errors. GPT-4's runs do: 21% of
  their actions (729 of 3,478 in gpt4+gold, all 801 tasks) are errors, 44% of them open with a guessed
  table name, so a model that imitates them errs as often; this one shows a single procedure that copies
  every name from an observation (docs/performance.md, learning curve).

`source` selects "gpt4", "gold", "gpt4+gold" (GPT-4 where it succeeded, gold elsewhere) or "schema_gold".
Only training task ids are used. The returned data card says how many trajectories came from each source and why the
others were dropped.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hpl import react
from hpl.intercode.actions import SUBMIT, format_sql_action
from hpl.intercode.statements import first_keyword
from hpl.trajectory import build_trajectory

SOURCES = ("gpt4", "gold", "gpt4+gold", "schema_gold")
DEFAULT_THRESHOLD = 1.0

_DESCRIBED_TABLE = re.compile(r"^\s*(?:DESCRIBE|DESC|SHOW\s+(?:FULL\s+)?COLUMNS\s+FROM)\s+`?([\w$]+)`?", re.I)


def logged_solutions(
    log_path: str | os.PathLike, task_ids: Iterable[str], threshold: float = DEFAULT_THRESHOLD
) -> dict[str, list[str]]:
    """Task id -> GPT-4's actions up to its first action reaching `threshold`, for the tasks it solved."""
    with open(log_path) as handle:
        log: dict[str, Any] = json.load(handle)
    solutions = {}
    for task_id in task_ids:
        run = log.get(str(task_id))
        if not run or run.get("summary", {}).get("max_reward", 0.0) < threshold:
            continue
        actions = run["turn_history"]["actions"]
        rewards = run["turn_history"]["rewards"]
        best = next((i for i, reward in enumerate(rewards) if reward >= threshold), None)
        if best is not None:
            solutions[str(task_id)] = list(actions[: best + 1])
    return solutions


def thought_for(sql: str, *, after_error: bool, final: bool) -> str:
    """A templated thought for an action (the log has none): what the action is for."""
    verb = first_keyword(sql)
    described = _DESCRIBED_TABLE.match(sql)
    if described:
        return f"I should look at the columns of the table {described.group(1)} to see what it holds."
    if verb == "SHOW" and re.search(r"\bTABLES\b", sql, re.I):
        return "I should find out which tables the database has."
    if verb == "SHOW":
        return "I should inspect the database schema."
    if after_error:
        return "The previous query failed, so I should correct it and run it again."
    if final:
        return "I now know the schema, so I should write the query that answers the question."
    return "I should query the relevant data to understand it better."


SUBMIT_THOUGHT = "The result of my last query answers the question, so I submit it."


def play(env: Any, task_id: str, sql_actions: list[str], source: str) -> dict[str, Any]:
    """Replay SQL actions then `submit` through `env`; the trajectory record with the reward it earned."""
    first_observation, meta = env.reset(task_id)
    steps: list[tuple[str, str]] = []
    after_error = False
    for index, sql in enumerate(sql_actions):
        thought = thought_for(sql, after_error=after_error, final=index == len(sql_actions) - 1)
        action = format_sql_action(sql)
        result = env.step(action)
        steps.append((react.format_turn(thought, action), result.observation))
        after_error = bool(result.info.get("invalid"))
    result = env.step(SUBMIT)
    steps.append((react.format_turn(SUBMIT_THOUGHT, SUBMIT), result.observation))
    return build_trajectory(
        task_id,
        env.instruction(),
        first_observation,
        steps,
        result.reward,
        db=meta["db"],
        task_type=meta["task_type"],
        source=source,
    )


def database_tables(env: Any, task_id: str) -> list[str]:
    """The task's database's tables as `SHOW TABLES` answers in this environment (an episode of its own)."""
    env.reset(task_id)
    observation = env.step(format_sql_action("SHOW TABLES")).observation
    try:
        rows = ast.literal_eval(observation.strip())
    except (ValueError, SyntaxError):
        raise ValueError(f"InterCode-SQL task {task_id}: SHOW TABLES gave {observation[:200]!r}") from None
    return [str(row[0]) for row in rows]


def schema_discovery(gold: str, tables: list[str]) -> list[str]:
    """SHOW TABLES, DESCRIBE of each of `tables` the gold query names (in the order it first names them),
    then the gold query."""
    words = [w.lower() for w in re.findall(r"\w+", gold)]
    by_name = {t.lower(): t for t in tables}
    named = [by_name[w] for w in dict.fromkeys(words) if w in by_name]
    return ["SHOW TABLES", *(f"DESCRIBE {t}" for t in named), gold]


def _gold_actions(env: Any, task_id: str, source: str, tables: dict[str, list[str]]) -> list[str]:
    """The gold demonstration's SQL actions; `tables` caches each database's SHOW TABLES answer."""
    task = env.task(task_id)
    if source != "schema_gold":
        return [task.gold]
    if task.db not in tables:
        tables[task.db] = database_tables(env, task_id)
    return schema_discovery(task.gold, tables[task.db])


def _replays_succeed(env: Any, task_id: str, actions: list[str], threshold: float, times: int) -> bool:
    return all(play(env, task_id, actions, "gpt4")["reward"] >= threshold for _ in range(times))


def expert_trajectories(
    env: Any,
    log_path: str | os.PathLike | None = None,
    source: str = "gpt4+gold",
    threshold: float = DEFAULT_THRESHOLD,
    replays: int = 3,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The expert trajectories of the training split and their data card.

    A GPT-4 run is kept only if `replays` replays all reach the threshold: a final query of GPT-4's that
    breaks a tie (ORDER BY count(*) LIMIT 1 with several rows tied) scores 1 on some runs and 0 on others.
    """
    if source not in SOURCES:
        raise ValueError(f"expert source must be one of {SOURCES}, not {source!r}")
    train = env.task_ids("train")
    if log_path is None:
        log_path = Path(env.data_dir) / "gpt-4_multiturn_10_turns.json"
    kept: dict[str, dict[str, Any]] = {}
    card: dict[str, Any] = {
        "benchmark": "intercode_sql",
        "source": source,
        "threshold": threshold,
        "train_tasks": len(train),
    }
    if "gpt4" in source:
        solutions = logged_solutions(log_path, train, threshold)
        failed = []
        for task_id, actions in solutions.items():
            record = play(env, task_id, actions, "gpt4")
            if record["reward"] >= threshold and _replays_succeed(
                env, task_id, actions, threshold, replays - 1
            ):
                kept[task_id] = record
            else:
                failed.append(task_id)
        card.update(
            gpt4_logged_solved=len(solutions), gpt4_kept=len(kept), gpt4_failed_replay=sorted(failed, key=int)
        )
    if "gold" in source:  # gold and schema_gold: the tasks GPT-4 left (all of them without it)
        name = "schema_gold" if source == "schema_gold" else "gold"
        gold_kept, gold_failed, tables = 0, [], {}
        for task_id in train:
            if task_id in kept:
                continue
            record = play(env, task_id, _gold_actions(env, task_id, name, tables), name)
            if record["reward"] >= threshold:
                kept[task_id] = record
                gold_kept += 1
            else:
                gold_failed.append(task_id)
        card.update({f"{name}_kept": gold_kept, f"{name}_failed": sorted(gold_failed, key=int)})
    records = [kept[task_id] for task_id in train if task_id in kept]
    card["total"] = len(records)
    card["mean_actions"] = round(
        sum(len(r["conversations"][3::2]) for r in records) / max(len(records), 1), 2
    )
    return records, card
