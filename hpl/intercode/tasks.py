"""InterCode-SQL's tasks and the fixed train/test split.

`ic_spider_dev.json` holds 1034 tasks (question, gold query, database, Spider hardness) over 20 databases;
a task's id is its index in the file, as a string. Two splits (`make_split`, config `intercode_sql.split`):

- "paper" (`paper_split`): IPR's published test split, tasks 0-199 (its test_indices.json), all of them;
  train = the other scoreable tasks. IPR/ETO and the paper trained on Spider-*train* questions
  (ic_spider_train.json), which InterCode does not publish; here training tasks share databases with the
  test tasks, which makes test questions easier than in the paper's setting.
- "database" (`split_tasks`): no database has tasks on both sides (a question about a database seen in
  training is far easier: same schema, often near-duplicate questions).

The database split (`split_tasks`, seed 0 by default):
1. Unscoreable tasks belong to neither split: the 6 whose gold query is not valid MySQL (`INVALID_GOLD`;
   InterCode would score any empty answer 1.0 on them), the 20 whose gold result is decided by a tie
   broken at random (`AMBIGUOUS_GOLD`: the same query returns different rows from run to run, so even the
   gold query itself does not always score 1) and the 7 whose result depends on which row MariaDB takes a
   bare column from (`UNDETERMINED_GOLD`). They serve neither as test tasks nor as demonstrations.
2. The databases are put in a seeded random order and taken greedily while their task count still fits in
   200; orders are retried (seed, attempt 0, 1, ...) until the chosen databases hold exactly 200 tasks.
   With seed 0 attempt 1 gives exactly 200: battle_death (16), flight_2 (78), real_estate_properties (4),
   singer (30), student_transcripts_tracking (72); 801 training tasks over the other 15 databases. The fallback (never needed
   for this file) overshoots, keeps the first 200 test-database tasks and leaves the rest of them unused.
3. Every other task is a training task.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpl.envs.base import BenchmarkError

TASKS_FILE = "ic_spider_dev.json"
DUMP_FILE = "ic_spider_dbs.sql"
GPT4_LOG_FILE = "gpt-4_multiturn_10_turns.json"

#: gold queries that MariaDB (like MySQL 8) rejects, by task id, with the reason
INVALID_GOLD: dict[str, str] = {
    "164": "`SHOW` is a reserved word: the table `show` must be quoted (SELECT avg(Attendance) FROM SHOW)",
    "802": "`SHOW` is a reserved word: the table `show` must be quoted (SELECT avg(Attendance) FROM SHOW)",
    "178": "derived table without an alias (SELECT COUNT(*) FROM (... INTERSECT ...))",
    "225": "derived table without an alias (SELECT COUNT(*) FROM (... INTERSECT ...))",
    "531": "space between COUNT and '(' (COUNT (*)) is a syntax error without sql_mode IGNORE_SPACE",
    "638": "space between COUNT and '(' (COUNT (*)) is a syntax error without sql_mode IGNORE_SPACE",
}

_TIE = (
    "ties at ORDER BY count(*) ... LIMIT 1: MariaDB returns one of several tied rows, differing between runs"
)
#: gold queries whose result is not determined by the data (found by running every gold query up to 200 times
#: on fresh connections; all are GROUP BY ... ORDER BY count(*) LIMIT 1 with a tie for first place)
AMBIGUOUS_GOLD: dict[str, str] = {
    task_id: _TIE
    for task_id in (
        "50",
        "70",
        "100",
        "129",
        "198",
        "349",
        "377",
        "407",
        "426",
        "445",
        "484",
        "512",
        "569",
        "669",
        "776",
        "811",
        "871",
        "916",
        "964",
        "978",
    )
}

_BARE = "a bare column (neither grouped nor aggregated) takes several values per group: MariaDB returns any of them"
#: gold queries MySQL 8 rejects (ONLY_FULL_GROUP_BY) and MariaDB answers with an arbitrary row's value; found
#: by `hpl.intercode.gold_check.undetermined` (MIN() vs MAX() of each bare column on the real data), and
#: recomputed on the server by tests/test_intercode_sql.py
UNDETERMINED_GOLD: dict[str, str] = {
    "54": _BARE + " (template_type_code beside min(Version_Number), no GROUP BY)",
    "798": _BARE + " (template_type_code beside min(Version_Number), no GROUP BY)",
    "803": _BARE + " (average beside max(capacity), no GROUP BY)",
    "525": _BARE + " (LANGUAGE grouped by CountryCode beside max(Percentage))",
    "850": _BARE + " (LANGUAGE grouped by CountryCode beside max(Percentage))",
    "710": _BARE + " (id grouped by country)",
    "967": _BARE + " (id grouped by country)",
}

#: the paper's test split: IPR's eval_agent/data/intercode_sql/test_indices.json lists tasks 0-199
PAPER_TEST_IDS: tuple[str, ...] = tuple(str(i) for i in range(200))
SPLIT_KINDS = ("database", "paper")

DEFAULT_TEST_SIZE = 200
DEFAULT_SPLIT_SEED = 0
_MAX_ATTEMPTS = 10_000


@dataclass(frozen=True)
class SqlTask:
    task_id: str
    question: str
    gold: str
    db: str
    hardness: str
    tables: tuple[str, ...]
    columns: tuple[str, ...] = ()  # of all its tables, as Spider spells them

    @property
    def gold_valid(self) -> bool:
        return self.task_id not in INVALID_GOLD

    @property
    def scoreable(self) -> bool:
        """Whether the gold query defines one answer (valid MySQL, no tie broken at random, no bare column
        whose value MariaDB picks from an arbitrary row)."""
        return (
            self.gold_valid and self.task_id not in AMBIGUOUS_GOLD and self.task_id not in UNDETERMINED_GOLD
        )


def load_tasks(data_dir: str | os.PathLike) -> list[SqlTask]:
    """All tasks of the mirror folder, in file order (task id = index)."""
    path = Path(data_dir) / TASKS_FILE
    if not path.is_file():
        raise BenchmarkError(f"InterCode-SQL tasks not found: {path} (is the data mirror set?)")
    with open(path) as handle:
        records: list[dict[str, Any]] = json.load(handle)
    tasks = []
    for index, record in enumerate(records):
        try:
            tasks.append(
                SqlTask(
                    task_id=str(index),
                    question=record["query"],
                    gold=record["gold"],
                    db=record["db"],
                    hardness=record["hardness"],
                    tables=tuple(record.get("db_tables", {})),
                    columns=tuple(
                        dict.fromkeys(c for cs in record.get("db_tables", {}).values() for c in cs)
                    ),
                )
            )
        except KeyError as err:
            raise BenchmarkError(f"{path}: task {index} lacks field {err}") from None
    return tasks


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    test: tuple[str, ...]
    test_databases: tuple[str, ...]
    unused: tuple[str, ...]  # unscoreable tasks, and test-database tasks beyond the test size
    seed: int
    attempt: int  # which seeded database order gave the split (-1: the overshoot fallback)
    kind: str = "database"

    def ids(self, split: str) -> list[str]:
        if split == "train":
            return list(self.train)
        if split == "test":
            return list(self.test)
        raise KeyError(f"intercode_sql has the splits 'train' and 'test', not {split!r}")


def _greedy_databases(counts: Counter, order: list[str], size: int) -> list[str]:
    chosen, total = [], 0
    for db in order:
        if total + counts[db] <= size:
            chosen.append(db)
            total += counts[db]
    return chosen


def split_tasks(
    tasks: list[SqlTask], test_size: int = DEFAULT_TEST_SIZE, seed: int = DEFAULT_SPLIT_SEED
) -> Split:
    """The database-disjoint split described in the module docstring."""
    usable = [task for task in tasks if task.scoreable]
    counts = Counter(task.db for task in usable)
    databases = sorted(counts)
    chosen: list[str] | None = None
    attempt = 0
    for attempt in range(_MAX_ATTEMPTS):
        order = list(databases)
        random.Random(f"{seed}:{attempt}").shuffle(order)
        candidate = _greedy_databases(counts, order, test_size)
        if sum(counts[db] for db in candidate) == test_size:
            chosen = candidate
            break
    if chosen is None:  # overshoot: whole databases until test_size is reached, then cut
        attempt = -1
        order = list(databases)
        random.Random(f"{seed}:fallback").shuffle(order)
        chosen, total = [], 0
        for db in order:
            if total >= test_size:
                break
            chosen.append(db)
            total += counts[db]
    test_dbs = set(chosen)
    in_test_dbs = [task.task_id for task in usable if task.db in test_dbs]
    test = tuple(in_test_dbs[:test_size])
    train = tuple(task.task_id for task in usable if task.db not in test_dbs)
    unused = tuple(sorted(set(t.task_id for t in tasks) - set(test) - set(train), key=int))
    return Split(train, test, tuple(sorted(test_dbs)), unused, seed, attempt)


def paper_split(tasks: list[SqlTask]) -> Split:
    """IPR's split (the paper's): test = tasks 0-199 as they are, unscoreable ones included, since the
    paper's numbers include them; train = every other scoreable task. Databases are shared."""
    by_id = {task.task_id: task for task in tasks}
    missing = [task_id for task_id in PAPER_TEST_IDS if task_id not in by_id]
    if missing:
        raise BenchmarkError(
            f"intercode_sql.split 'paper' needs tasks 0-199 of {TASKS_FILE}; the file has {len(tasks)} tasks"
        )
    test_ids = set(PAPER_TEST_IDS)
    train = tuple(t.task_id for t in tasks if t.task_id not in test_ids and t.scoreable)
    unused = tuple(t.task_id for t in tasks if t.task_id not in test_ids and not t.scoreable)
    test_dbs = tuple(sorted({by_id[task_id].db for task_id in PAPER_TEST_IDS}))
    return Split(train, PAPER_TEST_IDS, test_dbs, unused, seed=0, attempt=0, kind="paper")


def make_split(
    tasks: list[SqlTask],
    kind: str = "database",
    test_size: int = DEFAULT_TEST_SIZE,
    seed: int = DEFAULT_SPLIT_SEED,
) -> Split:
    """The split the config key `intercode_sql.split` names: "database" (`split_tasks`) or "paper"."""
    if kind == "database":
        return split_tasks(tasks, test_size, seed)
    if kind == "paper":
        return paper_split(tasks)
    raise BenchmarkError(f"intercode_sql.split must be one of {', '.join(SPLIT_KINDS)}, not {kind!r}")
