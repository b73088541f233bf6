"""Importing existing expert data (`expert_source: import`): ETO/IPR conversation files as D_e.

The file named by the benchmark's `expert_file` key is ETO/IPR's SFT format (e.g. `alfworld_sft.json`,
`webshop_sft.json`): a JSON list (or JSON lines) of

    {"id": ..., "conversations": [{"from": "human"|"gpt", "value": str}, ...], "reward": float, ...}

Each row is checked and mapped to this project's task ids; nothing is dropped silently: every row that is
not imported is listed in the data card (`problems`: row index, raw id, reason) and logged.

**Task id mapping** (`task_index`), per benchmark, always onto the *training* split:
- ALFWorld: a game path. `game_file` (ETO's field), else `id`, is cut to the part after `json_2.1.1/`
  and without a trailing `/game.tw-pddl` or `/traj_data.json`, then matched as the full id
  (`train/<task folder>/<trial folder>`), as `<task folder>/<trial folder>`, or as the trial folder alone
  (when unique). Games this project leaves out (unsolvable, movable or sliced objects) are unknown ids.
- WebShop: the goal index. `id` n or "n" -> `ws-n`; "ws-n" is taken as it is. ws-0 ... ws-199 are the
  test goals and are refused.
- InterCode-SQL: the index in `ic_spider_dev.json`. `id` n or "n" -> "n"; test-split ids are refused.

**Checks** per row: a mapped training task id; no earlier row with the same task; the schema of
`hpl.trajectory` (human/gpt alternating from the instruction, at least instruction, "OK", first
observation); every agent turn after "OK" has an action (`hpl.react.parse_action`); the first observation
describes *this* task (ALFWorld: the game's target objects from `traj_data.json` appear in the "Your task
is to:" line; WebShop: the goal's instruction text; InterCode-SQL: the question). The last check matters
for WebShop: ETO's goal indices number the original 12,087 human goals, this project's goals are rebuilt
from the 1000-product catalogue (docs/webshop.md), so an index alone proves nothing. A trailing
observation (human turn after the last action) is dropped, as for every trajectory of this project. A row
without `reward` is taken as 1.0 (ETO's ALFWorld file has none: its trajectories are the successful
ones) and counted in the card; rows below the benchmark's threshold (1.0 ALFWorld and InterCode-SQL,
0.8 WebShop) are not imported. `train_tasks` (when not null) keeps a seeded subset of the valid rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpl import react
from hpl.teacher import keep_threshold
from hpl.trajectory import SchemaError, validate_trajectory

log = logging.getLogger(__name__)

SOURCE = "import"
CONFIG_KEY = "expert_file"


class ExpertImportError(ValueError):
    """The import file is missing or not in the expected format; the message names the key and the path."""


def config_key(bench: str) -> str:
    return f"{bench}.{CONFIG_KEY}"


def check_import_config(config: dict, workdir: str | os.PathLike = ".") -> None:
    """Before any job: every benchmark importing its expert data names a file that exists."""
    for bench in config.get("benchmarks", []):
        settings = config.get(bench) or {}
        if settings.get("expert_source") != SOURCE:
            continue
        path = settings.get(CONFIG_KEY)
        if not path:
            raise ExpertImportError(
                f"{bench}.expert_source is 'import' but {config_key(bench)} names no file "
                "(an ETO/IPR conversation file such as alfworld_sft.json; docs/teacher.md)"
            )
        if not (Path(workdir) / path).is_file():
            raise ExpertImportError(f"{config_key(bench)}: expert file not found: {path}")


def load_rows(path: str | os.PathLike, key: str = CONFIG_KEY) -> list[Any]:
    """The rows of an import file: a JSON list, or JSON lines (one object per line)."""
    path = Path(path)
    if not path.is_file():
        raise ExpertImportError(f"{key}: expert file not found: {path}")
    # utf-8-sig: files saved by Windows editors (and some exports) start with a BOM, which json rejects
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ExpertImportError(
                        f"{key}: {path} is neither a JSON list nor JSON lines (line {lineno}: {err.msg})"
                    ) from None
    if not isinstance(data, list):
        raise ExpertImportError(
            f"{key}: {path} must hold a JSON list of trajectories, not a {type(data).__name__}"
        )
    return data


# ------------------------------------------------------------------------------------------- task ids


@dataclass
class TaskIndex:
    """Which tasks rows may map to, and how (see the module docstring)."""

    bench: str
    split: str
    ids: list[str]
    resolve: Callable[[dict], tuple[str | None, str]]  # row -> (task id, "") or (None, why not)
    describe: Callable[[str], list[str]]  # task id -> texts its first observation must contain
    meta: Callable[[str], dict]  # task id -> task_type, split


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def _raw_id(row: dict) -> Any:
    return row.get("id", row.get("task_id"))


def _label(row: Any) -> Any:
    """How a row names its task in messages: its id, else its game file."""
    if not isinstance(row, dict):
        return None
    return _raw_id(row) if _raw_id(row) is not None else row.get("game_file")


def _index_id(value: Any) -> str | None:
    """n, "n" -> "n" (an index); anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return str(int(value.strip()))
    return None


def _alfworld_index(data_dir: Path, split: str) -> TaskIndex:
    from hpl.alfworld.data import game_path, list_task_ids, task_type

    ids = list_task_ids(data_dir, split)
    known = set(ids)
    by_pair: dict[str, str] = {}
    by_trial: dict[str, str | None] = {}
    for tid in ids:
        parts = tid.split("/")
        by_pair["/".join(parts[-2:])] = tid
        by_trial[parts[-1]] = None if parts[-1] in by_trial else tid  # None: ambiguous

    def key_of(value: Any) -> str:
        text = str(value).replace("\\", "/").strip()
        if "json_2.1.1/" in text:
            text = text.split("json_2.1.1/", 1)[1]
        text = text.strip("/")
        for tail in ("/game.tw-pddl", "/traj_data.json"):
            text = text.removesuffix(tail)
        return text

    def resolve(row: dict) -> tuple[str | None, str]:
        value = row.get("game_file") or _raw_id(row)
        if value is None or value == "":
            return None, "no game_file or id"
        key = key_of(value)
        if key in known:
            return key, ""
        if key.startswith("valid_") or key.startswith("valid/"):
            return None, f"game {key!r} is an evaluation game, not a {split} game"
        parts = key.split("/")
        if len(parts) >= 2 and "/".join(parts[-2:]) in by_pair:
            return by_pair["/".join(parts[-2:])], ""
        if parts[-1] in by_trial:
            found = by_trial[parts[-1]]
            return (found, "") if found else (None, f"trial folder {parts[-1]!r} is ambiguous")
        return None, f"unknown ALFWorld game {key!r} (not a {split} game of this project)"

    def describe(tid: str) -> list[str]:
        data = json.loads((game_path(data_dir, tid).parent / "traj_data.json").read_text())
        params = data.get("pddl_params", {})
        return [
            str(params[k]).lower()
            for k in ("object_target", "parent_target", "toggle_target")
            if params.get(k)
        ]

    return TaskIndex("alfworld", split, ids, resolve, describe, lambda tid: {"task_type": task_type(tid)})


def _webshop_index(data_dir: Path, split: str) -> TaskIndex:
    from hpl.webshop.catalogue import load_catalogue
    from hpl.webshop.goals import build_goals, index_of

    goals = build_goals(load_catalogue(data_dir))  # the environment's defaults (seed 233, 200 test goals)
    ids = goals.task_ids(split)
    known = set(ids)

    def resolve(row: dict) -> tuple[str | None, str]:
        value = _raw_id(row)
        index = _index_id(value)
        if index is None and isinstance(value, str) and value.startswith("ws-"):
            try:
                index = str(index_of(value))
            except ValueError:
                index = None
        if index is None:
            return None, f"id {value!r} is not a WebShop goal index (n or 'ws-n')"
        tid = f"ws-{index}"
        if tid in known:
            return tid, ""
        if int(index) < goals.num_test_goals:
            return None, f"{tid} is a test goal (ws-0 ... ws-{goals.num_test_goals - 1}), not a {split} goal"
        return None, f"no WebShop {split} goal {tid} (there are {len(goals.goals)} goals)"

    return TaskIndex(
        "webshop",
        split,
        ids,
        resolve,
        lambda tid: [goals.goal(tid).instruction_text],
        lambda tid: {"task_type": "webshop"},
    )


def _intercode_index(data_dir: Path, split: str, settings: dict | None = None) -> TaskIndex:
    from hpl.intercode.tasks import load_tasks, make_split

    tasks = {t.task_id: t for t in load_tasks(data_dir)}
    kind = (settings or {}).get("split", "database")  # config intercode_sql.split
    parts = make_split(list(tasks.values()), kind)  # the environment's defaults (200 test tasks, seed 0)
    ids = parts.ids(split)
    known = set(ids)

    def resolve(row: dict) -> tuple[str | None, str]:
        value = _raw_id(row)
        tid = _index_id(value)
        if tid is None:
            return None, f"id {value!r} is not an InterCode-SQL task index"
        if tid in known:
            return tid, ""
        if tid in parts.test:
            return None, f"task {tid} is in the test split, not the {split} split"
        if tid in tasks:
            return None, f"task {tid} is not in the {split} split (unscoreable or unused)"
        return None, f"no InterCode-SQL task {tid} (there are {len(tasks)})"

    return TaskIndex(
        "intercode_sql",
        split,
        ids,
        resolve,
        lambda tid: [tasks[tid].question],
        lambda tid: {"task_type": tasks[tid].hardness},
    )


INDEXES = {"alfworld": _alfworld_index, "webshop": _webshop_index, "intercode_sql": _intercode_index}


def task_index(
    bench: str, data_dir: str | os.PathLike, split: str = "train", settings: dict | None = None
) -> TaskIndex:
    """The task index of a benchmark split; `settings` (the benchmark's config section) picks
    InterCode-SQL's split kind."""
    try:
        build = INDEXES[bench]
    except KeyError:
        raise ValueError(f"no expert import for benchmark {bench!r} (known: {', '.join(INDEXES)})") from None
    if bench == "intercode_sql":
        return build(Path(data_dir), split, settings)
    return build(Path(data_dir), split)


# -------------------------------------------------------------------------------------------- import


def check_row(row: Any, index: TaskIndex) -> tuple[dict | None, str]:
    """(trajectory in this project's schema, "") or (None, why the row is not imported)."""
    if not isinstance(row, dict):
        return None, f"not an object but a {type(row).__name__}"
    task_id, why = index.resolve(row)
    if task_id is None:
        return None, why
    conversations = row.get("conversations")
    if not isinstance(conversations, list):
        return None, "no conversations list"
    conversations = [dict(turn) if isinstance(turn, dict) else turn for turn in conversations]
    if (
        len(conversations) > 3
        and isinstance(conversations[-1], dict)
        and conversations[-1].get("from") == "human"
    ):
        conversations.pop()  # the observation after the last action trains nothing
    reward = row.get("reward", 1.0)
    if isinstance(reward, bool) or not isinstance(reward, int | float):
        return None, f"reward {reward!r} is not a number"
    record = {"id": task_id, "conversations": conversations, "reward": float(reward)}
    try:
        validate_trajectory(record)
    except SchemaError as err:
        return None, f"invalid conversation: {str(err).split(': ', 1)[-1]}"
    if len(conversations) < 5:
        return None, "no agent turn after the first observation"
    for k, turn in enumerate(conversations[3:], start=3):
        if turn["from"] == "gpt" and react.parse_action(turn["value"]) is None:
            return None, f"turn {k} (gpt) has no 'Action: ...' line"
    first = _norm(conversations[2]["value"])
    if "your task is to:" in first and index.bench == "alfworld":
        first = first[first.index("your task is to:") :]
    missing = [text for text in index.describe(task_id) if _norm(text) not in first]
    if missing:
        return None, f"first observation does not describe task {task_id} (missing {missing[0]!r})"
    actions = [react.parse_action(t["value"]) for t in conversations[3:] if t["from"] == "gpt"]
    record.update(
        split=index.split,
        source=SOURCE,
        source_id=_label(row),
        n_actions=len(actions),
        reward_given="reward" in row,
        **index.meta(task_id),
    )
    return record, ""


def import_experts(
    bench: str,
    path: str | os.PathLike,
    index: TaskIndex,
    *,
    train_tasks: int | None = None,
    threshold: float | None = None,
    key: str | None = None,
) -> tuple[list[dict], dict[str, Any]]:
    """(imported trajectories in file order, data card); problems are in the card and the log."""
    from hpl.episodes import select_tasks

    key = key or config_key(bench)
    threshold = keep_threshold(bench) if threshold is None else threshold
    rows = load_rows(path, key)
    records: dict[str, dict] = {}
    problems: list[dict] = []
    reasons: Counter = Counter()

    def problem(i: int, row: Any, why: str) -> None:
        raw = _label(row)
        problems.append({"row": i, "id": raw, "reason": why})
        reasons[re.sub(r"\d+|'[^']*'", "#", why)] += 1
        log.warning("%s row %d (id %r) not imported: %s", key, i, raw, why)

    below = 0
    for i, row in enumerate(rows):
        record, why = check_row(row, index)
        if record is None:
            problem(i, row, why)
        elif record["id"] in records:
            problem(i, row, f"duplicate of an earlier row for task {record['id']}")
        elif record["reward"] < threshold:
            below += 1
            problem(i, row, f"reward {record['reward']:g} below the threshold {threshold:g}")
        else:
            records[record["id"]] = record
    valid = list(records)
    chosen = set(select_tasks(valid, train_tasks, seed=0))
    kept = [records[tid] for tid in valid if tid in chosen]
    card = {
        "benchmark": bench,
        "source": SOURCE,
        "file": str(path),
        "config_key": key,
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "id_mapping": ID_MAPPING[bench],
        "split": index.split,
        "keep_threshold": threshold,
        "rows": len(rows),
        "valid": len(valid),
        "kept": len(kept),
        "not_selected": len(valid) - len(kept),
        "train_tasks": train_tasks,
        "rejected": len(problems),
        "below_threshold": below,
        "reward_missing": sum(not r["reward_given"] for r in kept),
        "mean_actions": round(sum(r["n_actions"] for r in kept) / len(kept), 2) if kept else None,
        "reasons": dict(reasons),
        "problems": problems,
    }
    for record in kept:
        record.pop("reward_given")
    log.info(
        "%s: %d rows, %d valid, %d kept (train_tasks %s), %d not imported",
        key,
        len(rows),
        len(valid),
        len(kept),
        train_tasks,
        len(problems),
    )
    return kept, card


ID_MAPPING = {
    "alfworld": "game path (game_file, else id) after json_2.1.1/ -> train/<task folder>/<trial folder>",
    "webshop": "goal index n (or 'ws-n') -> ws-n; test goals ws-0..ws-199 refused",
    "intercode_sql": "index in ic_spider_dev.json -> the same index; test-split tasks refused",
}
