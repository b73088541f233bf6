"""InterCode-SQL: answer a question about a Spider database by querying it (MariaDB), then `submit`.

    env = make_env("intercode_sql", data_dir=mirror / "intercode_sql", server={"folder": "work/sqlserver"})
    obs, meta = env.reset(env.task_ids("test")[0])      # obs = the question; meta: task_type, db
    env.step("```sql SHOW TABLES ```")                    # observation: [('people',), ('poker_player',)]
    env.step("```sql SELECT Name FROM people ```")
    result = env.step("submit")                          # done; reward = IoU with the gold rows

How it follows InterCode (princeton-nlp/intercode) and ETO/IPR:
- Action: a ```sql fenced block (its one statement runs), a bare SQL statement, or `submit`
  (`hpl.intercode.actions`). The statement runs read-only in a sandbox (`hpl.intercode.sandbox`).
- Observation: the result rows as InterCode prints them (`str` of the list of row tuples, "[]" when empty)
  or "Error executing query: <server message>"; cut at `observation_chars` characters (ETO/IPR: 350)
  followed by "...".
- Reward (`hpl.intercode.reward`): given at `submit` only (done=True): multiset IoU between the rows of the
  latest action's result and the gold rows (an error as latest result scores 0, as in InterCode), scaled by
  Kendall's tau of the shared rows' order as the released InterCode does (`reward="intercode"`, default)
  or not (`reward="iou"`). Every other step has reward 0.
- Split (`split=`): "database" (database-disjoint, default) or "paper" (IPR's test tasks 0-199).
- Turn limit: max_turns = 10. The environment does not end an episode by itself; when the runner stops an
  episode at the limit without a submit, `final_reward()` scores it: by default ("zero") 0, as IPR's loop
  does; "latest" scores the latest result as if the agent had submitted it.
- Text as IPR prints it: an error observation gets IPR's trailing newline (unless it says "Unknown"); an
  action with nothing to run gets IPR's "I don't understand your input" message and changes nothing.
- Snapshots: agent SQL cannot write and sessions hold no state, so the state is just (latest result, turn
  count, done, reward) plus the base class's task and action list: restore is a copy (fast_restore).

Server failures: a server that cannot be reached or drops a session raises `ServerUnavailable` in the
sandbox, never an error observation. The environment then starts a private server again if its process died
(at most `max_server_restarts` times per environment), reconnects and runs the failed call again: the
episode needs no replay beyond that call, because sessions hold no state and agent SQL changes nothing,
so the episode's state (latest rows, turns) is in this object. If that fails too, `ServerError` names
the server and ends its log: the job stops rather than scoring an episode without a server.

Server settings (`server=`): a running server object (`PrivateServer`/`ExternalServer`, owned by the caller),
or a dict of `hpl.intercode.server.make_server` settings (`folder` for a private server, or
`host`/`port`/`user`/`password` for an existing one; the environment then owns and stops it), or None: a
private server in a temporary folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from hpl.admissible import FreeArgument
from hpl.envs.base import BenchmarkError, Environment, StepResult
from hpl.intercode.actions import INVALID, NOT_UNDERSTOOD, SUBMIT, parse_sql_action
from hpl.intercode.lexicon import CLOSE, OPEN, SqlLexicon
from hpl.intercode.reward import REWARDS, score
from hpl.intercode.sandbox import ERROR_PREFIX, Sandbox, ServerUnavailable
from hpl.intercode.server import ExternalServer, PrivateServer, ServerError, make_server
from hpl.intercode.tasks import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_SIZE,
    DUMP_FILE,
    SqlTask,
    load_tasks,
    make_split,
)

INSTRUCTION = (
    "You are a helpful assistant assigned with the task of problem-solving. To achieve this, you will "
    "interact with a MySQL Database system using SQL queries to answer a question.\n"
    "At each turn, you should first provide your step-by-step thinking for solving the task. Your thought "
    'process should start with "Thought: ", for example: Thought: I should write a SQL query that gets the '
    "average GNP and total population from nations whose government is US territory.\n"
    "After that, you have two options:\n"
    "1) Interact with a mysql programming environment and receive the corresponding output. Your action should "
    'start with "Action: " and hold one SQL statement surrounded with a ```sql ``` tag on the same line, for '
    "example: Action: ```sql SELECT AVG(GNP), SUM(population) FROM nations WHERE government = 'US Territory' ```\n"
    "2) Directly submit the result of your latest query as the answer, for example: Action: submit\n"
    'You should use this format: "Thought: your thought\\nAction: ```sql <the mysql command> ```". You will '
    "receive the corresponding output for your sql command.\n"
    'Your output should contain only one "Action" part.\n'
    'The "Action" part should be executed with a mysql interpreter or propose an answer. Any natural language '
    "in it should be commented out.\n"
    "The SQL query and submit parts can not appear in your output simultaneously."
)

log = logging.getLogger(__name__)

INFO_SCHEMA_READ = ("TABLES", "COLUMNS")  # information_schema tables whose columns a query may name
OBSERVATION_CHARS = 350  # ETO/IPR cut every observation at 350 characters and add "..."
TRUNCATION_POLICIES = ("zero", "latest")


def error_observation(error: str) -> str:
    """IPR's text for a failed query: the error, plus a newline unless it says "Unknown" (IPR appends
    "\n" to an output holding "Error" but not "Unknown"); the 350-character cut comes after."""
    return error if "Unknown" in error else error + "\n"


@dataclass(frozen=True)
class SqlSnapshot:
    """Everything an InterCode-SQL episode's future depends on."""

    task_id: str
    actions: tuple[str, ...]
    last_rows: tuple[tuple, ...] | None
    turns: int
    done: bool
    reward: float


class InterCodeSQLEnv(Environment):
    name = "intercode_sql"
    max_turns = 10
    fast_restore = True

    def __init__(
        self,
        data_dir: str | os.PathLike,
        server: Any = None,
        *,
        test_size: int = DEFAULT_TEST_SIZE,
        split_seed: int = DEFAULT_SPLIT_SEED,
        statement_time_s: float = 5.0,
        max_rows: int = 10_000,
        observation_chars: int = OBSERVATION_CHARS,
        reward: str = "intercode",
        split: str = "database",
        truncation_reward: str = "zero",
        schema_hint: bool = False,
        max_turns: int = 10,
        step_time_s: float | None = None,
        max_server_restarts: int = 3,
    ) -> None:
        super().__init__()
        self.max_turns = max_turns
        if truncation_reward not in TRUNCATION_POLICIES:
            raise ValueError(
                f"truncation_reward must be one of {TRUNCATION_POLICIES}, not {truncation_reward!r}"
            )
        self.data_dir = Path(data_dir)
        self.tasks: dict[str, SqlTask] = {task.task_id: task for task in load_tasks(self.data_dir)}
        self.split = make_split(list(self.tasks.values()), split, test_size, split_seed)
        self.observation_chars = int(observation_chars)
        if reward not in REWARDS:
            raise ValueError(f"intercode_sql.reward must be one of {', '.join(REWARDS)}, not {reward!r}")
        self.reward_kind = reward
        self.truncation_reward = truncation_reward
        self.schema_hint = bool(schema_hint)
        self.max_server_restarts = int(max_server_restarts)
        self._server_restarts = 0
        self.server, self._owns_server = self._open_server(server)
        databases = sorted({task.db for task in self.tasks.values()})
        try:
            self.sandbox = Sandbox(
                self.server.settings,
                databases,
                statement_time_s=statement_time_s,
                max_rows=max_rows,
                step_time_s=step_time_s,
            ).prepare()
        except BaseException:
            if self._owns_server:
                self.server.stop()
            raise
        self._gold: dict[str, list[tuple]] = {}
        self._gold_errors: dict[str, str] = {}
        self._server_words: set[str] | None = None
        self._server_functions: set[str] = set()
        self._info_schema: dict[str, set[str]] = {}
        self._lexicons: dict[str, SqlLexicon] = {}
        self._clear_episode()

    def _open_server(self, server: Any) -> tuple[Any, bool]:
        dump = self.data_dir / DUMP_FILE
        if isinstance(server, (PrivateServer, ExternalServer)):
            return server.start(), False
        settings = dict(server or {})
        created = make_server(dump, **settings)
        try:
            return created.start(), True
        except BaseException:
            created.stop()
            raise

    def _clear_episode(self) -> None:
        self._task: SqlTask | None = None
        self._last_rows: list[tuple] | None = None
        self._turns = 0
        self._done = False
        self._reward = 0.0

    # --- protocol ---------------------------------------------------------------------------------------
    def task_ids(self, split: str) -> list[str]:
        return self.split.ids(split)

    def instruction(self) -> str:
        return INSTRUCTION

    def _reset(self, task_id: str) -> tuple[str, dict[str, Any]]:
        task = self._lookup(task_id)
        self._clear_episode()
        self._task = task
        self.sandbox.fresh_session(task.db)
        self.gold_rows(task_id)
        return self._first_observation(task), {
            "task_type": task.hardness,
            "db": task.db,
            "gold_valid": task_id not in self._gold_errors,
            "scoreable": task.scoreable,
        }

    def _step(self, action: str) -> StepResult:
        task = self._task
        assert task is not None
        if self._done:
            return StepResult(
                "The episode is over; reset to start another task.", self._reward, True, {"invalid": True}
            )
        self._turns += 1
        kind, sql = parse_sql_action(action)
        if kind == SUBMIT:
            self._done = True
            self._reward = self._score(self._last_rows)
            return StepResult("Submitted.", self._reward, True, {"invalid": False, "submitted": True})
        if kind == INVALID:  # nothing runs, so the latest result stays what a submit scores (as in IPR)
            return StepResult(NOT_UNDERSTOOD, 0.0, False, {"invalid": True, "understood": False})
        outcome = self._on_server(self.sandbox.run, task.db, sql)
        self._last_rows = outcome.rows
        text = str(outcome.rows) if outcome.ok else error_observation(str(outcome.error))
        info = {
            "invalid": not outcome.ok,
            "rows": None if outcome.rows is None else len(outcome.rows),
            "seconds": outcome.seconds,
        }
        return StepResult(self._truncate(text), 0.0, False, info)

    def admissible_actions(self) -> list[str | FreeArgument]:
        """`submit`, or a query whose bare words the task database's lexicon allows (hpl.intercode.lexicon):
        the constraint of `generation.actions: admissible`."""
        if self._task is None or self._done:
            return []
        return [SUBMIT, FreeArgument(OPEN, CLOSE, self.lexicon(self._task.db))]

    def lexicon(self, db: str) -> SqlLexicon:
        """The words a query on `db` may use: the server's SQL words, the names of `db` (as the server and
        Spider spell them) and of information_schema (GPT-4's runs read it too); cached per database."""
        if db not in self._lexicons:
            if self._server_words is None:
                self._server_words = self._on_server(self.sandbox.server_words)
                self._server_functions = self._on_server(self.sandbox.server_functions)
                self._info_schema = self._on_server(self.sandbox.schema_names, "information_schema")
            schema = self._on_server(self.sandbox.schema_names, db)
            tables, columns = set(schema), {column for names in schema.values() for column in names}
            for task in self.tasks.values():  # the server lower-cases table names; Spider's spellings too
                if task.db == db:
                    tables, columns = tables | set(task.tables), columns | set(task.columns)
            # information_schema's tables after "information_schema.", and the columns GPT-4's runs read
            # there (not every column of it: PROCESSLIST's ID would let a model write T1.ID on any database)
            info = {column for table in INFO_SCHEMA_READ for column in self._info_schema.get(table, ())}
            schemas = {db: tables, "information_schema": set(self._info_schema)}
            self._lexicons[db] = SqlLexicon(
                self._server_words, tables, columns | info, schemas, functions=self._server_functions
            )
        return self._lexicons[db]

    def final_reward(self) -> float:
        """The episode's reward: the submitted one, or, for an episode the runner ended without a submit
        (turn limit), the `truncation_reward` policy's ("latest": score the latest result; "zero": 0)."""
        if self._task is None:
            raise RuntimeError("intercode_sql: final_reward() called before reset()")
        if self._done:
            return self._reward
        if self.truncation_reward == "zero":
            return 0.0
        return self._score(self._last_rows)

    def snapshot(self) -> SqlSnapshot:
        if self._task_id is None or self._task is None:
            raise RuntimeError("intercode_sql: snapshot() called before reset()")
        rows = None if self._last_rows is None else tuple(self._last_rows)
        return SqlSnapshot(self._task_id, tuple(self._actions), rows, self._turns, self._done, self._reward)

    def restore(self, snapshot: Any) -> None:
        if not isinstance(snapshot, SqlSnapshot):
            raise TypeError(f"intercode_sql: not a snapshot of this environment: {type(snapshot).__name__}")
        task = self._lookup(snapshot.task_id)
        self._task = task
        self.sandbox.fresh_session(task.db)
        self._task_id = snapshot.task_id
        self._actions = list(snapshot.actions)
        self._last_rows = None if snapshot.last_rows is None else list(snapshot.last_rows)
        self._turns = snapshot.turns
        self._done = snapshot.done
        self._reward = snapshot.reward

    def close(self) -> None:
        self.sandbox.close()
        if self._owns_server:
            self.server.stop()

    # --- helpers ----------------------------------------------------------------------------------------
    @property
    def turns(self) -> int:
        return self._turns

    @property
    def done(self) -> bool:
        return self._done

    def task(self, task_id: str) -> SqlTask:
        return self._lookup(task_id)

    def gold_rows(self, task_id: str) -> list[tuple]:
        """The gold query's rows (cached per task). A gold query the server refuses as SQL gives [] as in
        InterCode; the split leaves those tasks out (`hpl.intercode.tasks.INVALID_GOLD`). A server failure
        is never cached: it raises ServerError after one recovery attempt (`_on_server`)."""
        if task_id not in self._gold:
            task = self._lookup(task_id)
            try:
                self._gold[task_id] = self._on_server(self.sandbox.gold_rows, task.db, task.gold)
            except pymysql.MySQLError as err:
                self._gold[task_id] = []
                self._gold_errors[task_id] = ERROR_PREFIX + str(err.args[-1])
        return self._gold[task_id]

    def gold_error(self, task_id: str) -> str | None:
        self.gold_rows(task_id)
        return self._gold_errors.get(task_id)

    # --- server failures --------------------------------------------------------------------------------
    def _on_server(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)`; after a server failure, recover (`_recover`) and call once more. A second
        failure raises ServerError naming the server: no observation or reward without a server."""
        try:
            return call(*args)
        except ServerUnavailable as err:
            self._recover(err)
        try:
            return call(*args)
        except ServerUnavailable as err:
            raise ServerError(
                f"intercode_sql: the SQL server failed again right after recovering: {err}; "
                f"{self.server.describe()}"
            ) from None

    def _recover(self, failure: ServerUnavailable) -> None:
        """Drop every session; start the server again if its process died (within the restart budget)."""
        report = self.server.describe()
        self.sandbox.reset()
        may_restart = self._server_restarts < self.max_server_restarts
        try:
            if self.server.revive(restart=may_restart):
                self._server_restarts += 1
                log.warning("intercode_sql: restarted the SQL server after: %s; before: %s", failure, report)
            self.sandbox.prepare()
        except ServerError as err:
            spent = (
                "" if may_restart else f" (no restart left: max_server_restarts = {self.max_server_restarts})"
            )
            raise ServerError(
                f"intercode_sql: the SQL server failed ({failure}) and did not come back{spent}: {err}"
            ) from None

    def _score(self, rows: list[tuple] | None) -> float:
        assert self._task is not None
        return score(rows, self.gold_rows(self._task.task_id), self.reward_kind)

    def _lookup(self, task_id: str) -> SqlTask:
        try:
            return self.tasks[str(task_id)]
        except KeyError:
            raise BenchmarkError(f"intercode_sql: no task {task_id!r} in {self.data_dir}") from None

    def _first_observation(self, task: SqlTask) -> str:
        if not self.schema_hint:
            return task.question
        return f"{task.question}\nDatabase: {task.db}. Tables: {', '.join(task.tables)}."

    def _truncate(self, text: str) -> str:
        if self.observation_chars > 0 and len(text) > self.observation_chars:
            return text[: self.observation_chars] + "..."
        return text
