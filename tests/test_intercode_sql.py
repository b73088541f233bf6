"""InterCode-SQL on a real MariaDB server, started once for the session by the `sql_server` fixture.

Needs the Debian package mariadb-server (mariadbd, mariadb-install-db) and the data mirror.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import string
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pymysql
import pytest

from hpl import episodes, react
from hpl.admissible import lexicon_admits
from hpl.benchmarks import BENCHMARKS
from hpl.envs.base import BenchmarkError, make_env
from hpl.intercode.actions import NOT_UNDERSTOOD, format_sql_action, normalize_reply, parse_sql_action
from hpl.intercode.expert import expert_trajectories
from hpl.intercode.gold_check import (
    UnsupportedQuery,
    rejected_by_full_group_by,
    rewrite_bare_columns,
    undetermined,
)
from hpl.intercode.lexicon import SqlLexicon
from hpl.intercode.reward import _round2, iou, kendall_tau_b, score
from hpl.intercode.sandbox import READ_ONLY_PASSWORD, Sandbox, ServerUnavailable, account_name
from hpl.intercode.server import DumpError, PrivateServer, ServerError, find_program
from hpl.intercode.statements import read_only_violation, split_statements
from hpl.intercode.tasks import (
    AMBIGUOUS_GOLD,
    INVALID_GOLD,
    UNDETERMINED_GOLD,
    load_tasks,
    make_split,
    split_tasks,
)
from hpl.trajectory import validate_trajectory

STATEMENT_TIME_S = 1.0  # short, so that the runaway-query cases finish fast
BOUND_S = STATEMENT_TIME_S + 3.0

try:
    find_program("mariadbd")
    HAVE_MARIADB = True
except ServerError:
    HAVE_MARIADB = False
needs_server = pytest.mark.skipif(not HAVE_MARIADB, reason="mariadb-server is not installed")


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dump(intercode_mirror: Path) -> Path:
    return intercode_mirror / "ic_spider_dbs.sql"


@pytest.fixture(scope="session")
def env(intercode_mirror, sql_server):
    environment = make_env(
        "intercode_sql", data_dir=intercode_mirror, server=sql_server, statement_time_s=STATEMENT_TIME_S
    )
    yield environment
    environment.close()
    assert sql_server.running  # the environment does not stop a server it was given


def play(env, task_id: str, *actions: str):
    env.reset(task_id)
    result = None
    for action in actions:
        result = env.step(action)
    return result


# --- reward --------------------------------------------------------------------------------------
def test_iou_hand_cases():
    assert iou([], []) == 1.0
    assert iou(None, []) == 0.0
    assert iou([(1,)], []) == 0.0
    assert iou([(1,), (2,)], [(2,), (1,)]) == 1.0  # order does not matter
    assert iou([(1,), (1,)], [(1,)]) == 0.5  # duplicates count: {1,1} vs {1}
    assert iou([(1,), (1,), (2,)], [(1,), (2,), (2,)]) == 2 / 4  # min(2,1)+min(1,2) over max(2,1)+max(1,2)
    assert iou([(1, "a")], [(1, "b")]) == 0.0
    assert iou([("1",)], [(1,)]) == 0.0  # rows compare as printed: '1' is not 1


# Expected values below are worked out by hand from intercode-bench 0.1.22's SqlEnv.get_reward (IoU, then
# round(kendalltau(agent shared rows, gold shared rows).statistic * IoU, 2) unless tau is NaN) and scipy's
# tau-b: (tot - xtie - ytie + ntie - 2 * dis) / sqrt(tot - xtie) / sqrt(tot - ytie), NaN when one side
# is all ties; rows compare as their str().
def test_intercode_reward_scales_by_row_order():
    gold = [(1,), (2,), (3,)]
    assert score([(3,), (2,), (1,)], gold) == -1.0  # every pair discordant: tau -1
    assert score([(3,), (2,), (1,)], gold, "iou") == 1.0
    assert score([(1,), (2,), (3,)], gold) == 1.0
    # one swapped pair of 4: tot 6, dis 1, tau 4/6; round(0.666.., 2)
    assert score([(1,), (2,), (4,), (3,)], [(1,), (2,), (3,), (4,)]) == 0.67
    # IoU 2/3 (shared 2 of union 3), tau 1: rounded to 0.67, while iou keeps 2/3
    assert score([(1,), (2,)], gold) == 0.67 and score([(1,), (2,)], gold, "iou") == 2 / 3
    # shared (2,), (1,) in the agent's order against (1,), (2,): tau -1, IoU 2/4 -> -0.5
    assert score([(2,), (1,), (5,)], gold) == -0.5
    # one shared row: tau NaN, the IoU stays unscaled and unrounded
    assert score([(1,), (9,)], [(1,), (2,)]) == 1 / 3
    assert score([(1,)], [(1,)]) == 1.0 and score([], []) == 1.0 and score(None, gold) == 0.0
    # duplicates: x = (1),(1),(2) vs y = (1),(2),(1): tot 3, xtie 1, ytie 1, ntie 0, dis 1 -> -1/sqrt2/sqrt2
    assert score([(1,), (1,), (2,)], [(1,), (2,), (1,)]) == -0.5
    with pytest.raises(ValueError, match="intercode_sql.reward"):
        score([], [], "order")


def test_kendall_tau_follows_scipy_arithmetic():
    assert kendall_tau_b([1, 2, 3, 4], [1, 2, 4, 3]) == 4 / math.sqrt(6) / math.sqrt(6)  # bit for bit
    assert kendall_tau_b(["a", "a", "b"], ["a", "b", "a"]) == -1 / math.sqrt(2) / math.sqrt(2)
    # ties in x only: tot 3, xtie 1, ytie 0, dis 0 -> 2 / sqrt(2) / sqrt(3)
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == 2 / math.sqrt(2) / math.sqrt(3)
    assert math.isnan(kendall_tau_b([1], [1])) and math.isnan(kendall_tau_b([1, 1], [1, 2]))
    assert math.isnan(kendall_tau_b([], []))


def test_rounding_is_numpy_round():
    # InterCode rounds a numpy float64 (scipy's statistic times the IoU): numpy's round, which differs from
    # Python's round(x, 2) on some values
    np = pytest.importorskip("numpy")
    values = [0.285, 0.675, 1.005, -0.125, 0.335, 0.6666666666666669, 2.675, 0.145, 0.015, -0.575]
    assert [_round2(v) for v in values] == [float(round(np.float64(v), 2)) for v in values]
    halves = [k / 100 + 0.005 for k in range(-100, 100)]  # x.xx5: where the two roundings part
    differs = [v for v in halves if round(v, 2) != float(round(np.float64(v), 2))]
    assert differs and all(_round2(v) == float(round(np.float64(v), 2)) for v in halves)


# --- statements and actions ----------------------------------------------------------------------
def test_split_statements_respects_literals_and_comments():
    text = "SELECT ';' ; -- a comment; here\nSELECT `a;b` FROM t /* x; y */;\n/*!40101 SET x=1 */;"
    statements = split_statements(text)
    assert [s.text for s in statements] == [
        "SELECT ';'",
        "-- a comment; here\nSELECT `a;b` FROM t /* x; y */",
        "/*!40101 SET x=1 */",
    ]
    assert [s.line for s in statements] == [1, 2, 3]


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE t",
        "DELETE FROM t",
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "GRANT ALL ON *.* TO x",
        "SET max_statement_time = 0",
        "SELECT @a := 1",
        "SELECT a INTO @x FROM t",
        "SELECT * FROM t FOR UPDATE",
        "USE world_1",
        "CREATE TABLE x (a INT)",
        "KILL 1",
        "CALL p()",
        "LOAD DATA INFILE 'x' INTO TABLE t",
        "/*! DROP TABLE t */",
        "/*!50000 DROP TABLE t */",
        "/*M! SET PASSWORD = PASSWORD('x'), @x = */ (SELECT 1)",
        "/*M!100000 SET STATEMENT max_statement_time=0 FOR */ SELECT SLEEP(12)",
        "SELECT 1 /*!, SLEEP(100) */",
        "SELECT 'a\\' /*!, SLEEP(100) */ -- '",
        "SELECT /*+ SET_VAR(max_statement_time=0) */ SLEEP(100)",
    ],
)
def test_statement_check_refuses_writes(sql):
    assert read_only_violation(sql) is not None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT REPLACE(name, 'a', 'b') FROM t",
        "SHOW TABLES",
        "DESCRIBE t",
        "desc t",
        "EXPLAIN SELECT 1",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "(SELECT 1) UNION (SELECT 2)",
        "SELECT 'drop table t'",
        "SELECT created FROM votes ORDER BY created DESC",
    ],
)
def test_statement_check_allows_reads(sql):
    assert read_only_violation(sql) is None


@pytest.mark.parametrize("sql", ["SELECT 1 -- x\n; DROP TABLE city", "SELECT 1 # x\n; DROP TABLE city"])
def test_comment_hidden_statements_are_still_counted(sql):
    """A line comment ends at the newline: what follows is a second statement, and the check refuses it."""
    assert [s.text for s in split_statements(sql)][1] == "DROP TABLE city" and "DROP" in read_only_violation(
        sql
    )


def test_executable_comments_are_statements_not_comments():
    """The dump loader and the check see MariaDB's /*M! */ as code, as the server does."""
    assert [s.text for s in split_statements("/*M! SELECT 1 */; /*M!100000 SELECT 2 */")] == [
        "/*M! SELECT 1 */",
        "/*M!100000 SELECT 2 */",
    ]
    assert [s.text for s in split_statements("/* plain */ SELECT 1; /*+ hint */ SELECT 2")] == [
        "/* plain */ SELECT 1",
        "/*+ hint */ SELECT 2",
    ]


def test_action_forms():
    assert parse_sql_action("```sql SELECT 1 ```") == ("sql", "SELECT 1")
    assert parse_sql_action("```sql\nSELECT 1\n```") == ("sql", "SELECT 1")
    assert parse_sql_action("SELECT 1") == ("sql", "SELECT 1")
    assert parse_sql_action("submit") == ("submit", "")
    assert parse_sql_action("submit.") == ("submit", "")
    # IPR (eval_agent/envs/intercode_sql_env.py): `if "submit" in action` submits, even inside SQL
    assert parse_sql_action("I submit my answer") == ("submit", "")
    assert parse_sql_action("SELECT * FROM t WHERE a = 'submit'")[0] == "submit"
    # IPR runs only the first line of the first ```sql block
    assert parse_sql_action("```sql\nSELECT a\nFROM t\n```") == ("sql", "SELECT a")
    assert parse_sql_action("```sql \n\n SELECT 2\nFROM t```") == ("sql", "SELECT 2")
    # nothing to run: IPR's "I don't understand your input"
    assert parse_sql_action("") == ("invalid", "") and parse_sql_action("```sql ```") == ("invalid", "")
    reply = "Thought: count them.\nAction: \n```sql\nSELECT count(*)\nFROM singer\n```"
    assert react.parse_action(normalize_reply(reply)) == format_sql_action("SELECT count(*) FROM singer")


# --- split ---------------------------------------------------------------------------------------
def test_split_is_database_disjoint_and_fixed(intercode_mirror):
    tasks = load_tasks(intercode_mirror)
    by_id = {task.task_id: task for task in tasks}
    split = split_tasks(tasks)
    assert len(split.test) == 200
    assert len(tasks) == 1034 and all(task.task_id == str(i) for i, task in enumerate(tasks))
    train_dbs = {by_id[t].db for t in split.train}
    test_dbs = {by_id[t].db for t in split.test}
    assert not train_dbs & test_dbs
    assert set(split.unused) == set(INVALID_GOLD) | set(AMBIGUOUS_GOLD) | set(UNDETERMINED_GOLD)
    assert split.test_databases == (
        "battle_death",
        "flight_2",
        "real_estate_properties",
        "singer",
        "student_transcripts_tracking",
    )
    assert len(split.train) == 801
    assert len(split.train) + len(split.test) + len(split.unused) == 1034
    assert split_tasks(load_tasks(intercode_mirror)) == split  # deterministic
    assert split_tasks(tasks, seed=1).test != split.test


def test_paper_split_is_ipr_test_indices(intercode_mirror):
    tasks = load_tasks(intercode_mirror)
    split = make_split(tasks, "paper")
    # IPR's eval_agent/data/intercode_sql/test_indices.json: 0, 1, ..., 199, in that order
    assert split.test == tuple(str(i) for i in range(200)) and split.kind == "paper"
    unscoreable = set(INVALID_GOLD) | set(AMBIGUOUS_GOLD) | set(UNDETERMINED_GOLD)
    # the paper's numbers include every test task, scoreable or not
    assert {"54", "164", "178", "50"} <= set(split.test) & unscoreable
    assert not set(split.train) & (set(split.test) | unscoreable)
    assert set(split.unused) == unscoreable - set(split.test)
    assert len(split.train) + len(split.test) + len(split.unused) == len(tasks)
    with pytest.raises(BenchmarkError, match="intercode_sql.split"):
        make_split(tasks, "random")


def test_bare_column_rewrite():
    query = "SELECT min(Version_Number) , template_type_code FROM Templates"
    assert rewrite_bare_columns(query, "MAX({})") == (
        "SELECT min( Version_Number ) , MAX(template_type_code) FROM Templates"
    )
    grouped = "SELECT T2.name AS n , T1.id , count(*) FROM a AS T1 JOIN b AS T2 ON T1.x = T2.y GROUP BY T1.id HAVING count(*) >= 2"
    assert rewrite_bare_columns(grouped, "MIN({})") == (
        "SELECT MIN(T2.name) AS n , T1.id , count( * ) FROM a AS T1 JOIN b AS T2 ON T1.x = T2.y "
        "GROUP BY T1.id HAVING count( * ) >= 2"
    )
    union = "SELECT a FROM t WHERE x = 'GROUP BY' UNION SELECT b , max(c) FROM u GROUP BY c"
    assert rewrite_bare_columns(union, "MIN({})") == (
        "SELECT a FROM t WHERE x = 'GROUP BY' UNION SELECT MIN(b) , max( c ) FROM u GROUP BY c"
    )
    with pytest.raises(UnsupportedQuery):
        rewrite_bare_columns("SELECT a , (SELECT max(b) FROM u) FROM t GROUP BY c", "MIN({})")


@needs_server
def test_undetermined_gold_queries_are_the_listed_ones(env):
    """Every gold query run under ONLY_FULL_GROUP_BY; the rejected ones judged on the data (gold_check)."""
    connection = env.server.settings.connect()
    rejected, found = [], set()
    try:
        with connection.cursor() as cursor:
            for task_id, task in env.tasks.items():
                if task_id in INVALID_GOLD or task_id in AMBIGUOUS_GOLD:  # out already; ties vary by run
                    continue
                cursor.execute(f"USE `{task.db}`")
                cursor.execute("SET SESSION sql_mode = CONCAT(@@GLOBAL.sql_mode, ',ONLY_FULL_GROUP_BY')")
                if rejected_by_full_group_by(cursor, task.gold):
                    rejected.append(task_id)
                    if undetermined(cursor, task.gold):
                        found.add(task_id)
    finally:
        connection.close()
    assert len(rejected) > 90  # MariaDB rejects many deterministic ones (no functional dependence)
    assert found == set(UNDETERMINED_GOLD)
    assert {"54", "798", "710", "967"} <= found  # the examples


# --- environment ---------------------------------------------------------------------------------
@needs_server
def test_gold_queries_of_test_tasks_score_one(env):
    failures = {}
    for task_id in env.task_ids("test"):
        result = play(env, task_id, format_sql_action(env.task(task_id).gold), "submit")
        if not (result.done and result.reward == 1.0):
            failures[task_id] = result.reward
    assert not failures


@needs_server
def test_gold_queries_valid_except_the_listed_ones(env):
    invalid = {task_id for task_id in env.tasks if env.gold_error(task_id) is not None}
    assert invalid == set(INVALID_GOLD)


@needs_server
def test_wrong_and_partial_queries_score_below_one(env):
    task_id = next(t for t in env.task_ids("test") if len(env.gold_rows(t)) > 1)
    gold = env.task(task_id).gold
    assert play(env, task_id, "SELECT 1", "submit").reward < 1.0
    assert play(env, task_id, "SELECT nonsense FROM nowhere", "submit").reward == 0.0  # error scores 0
    partial = play(env, task_id, f"SELECT * FROM ({gold.rstrip(';')}) AS g LIMIT 1", "submit").reward
    assert 0.0 < partial < 1.0
    assert play(env, task_id, "submit").reward == 0.0  # nothing queried


@needs_server
def test_episode_protocol(env):
    task_id = env.task_ids("test")[0]
    observation, meta = env.reset(task_id)
    assert observation == env.task(task_id).question
    assert (
        meta["task_id"] == task_id
        and meta["db"] == env.task(task_id).db
        and meta["task_type"] in {"easy", "medium", "hard", "extra"}
    )
    result = env.step("```sql SHOW TABLES ```")
    assert result.observation.startswith("[(") and not result.done and result.reward == 0.0
    assert not result.info["invalid"]
    result = env.step("SELECT nonsense")
    assert result.observation.startswith("Error executing query: ") and result.info["invalid"]
    long = env.step("SELECT REPEAT('x', 1000)")
    assert long.observation.endswith("...") and len(long.observation) == env.observation_chars + 3
    result = env.step("submit")
    assert result.done and env.step("SELECT 1").done  # over: no more actions
    assert env.max_turns == 10 and env.fast_restore


@needs_server
def test_final_reward_on_truncation(env):
    task_id = env.task_ids("test")[0]
    play(env, task_id, format_sql_action(env.task(task_id).gold))
    assert env.final_reward() == 0.0  # IPR: an episode stopped at max_steps without submit scores 0
    env.truncation_reward = "latest"
    try:
        assert env.final_reward() == 1.0  # scored as if the latest result were submitted
    finally:
        env.truncation_reward = "zero"


@needs_server
def test_text_as_ipr_prints_it(env, world_task):
    env.reset(world_task)
    # IPR appends "\n" to an error observation unless it holds "Unknown"
    unknown = env.step("```sql SELECT nonsense FROM city ```").observation
    assert unknown.startswith("Error executing query: Unknown column") and not unknown.endswith("\n")
    syntax = env.step("```sql SELECT FROM city ```").observation
    assert syntax.startswith("Error executing query: You have an error in your SQL syntax")
    assert syntax.endswith("\n")
    # only the first line of a fenced block runs (the second line alone would be an error)
    assert env.step("```sql\nSELECT 7\nFROM nowhere\n```").observation == "[(7,)]"
    # nothing to run: IPR's message; the step counts and the latest result stays the one a submit scores
    task = env.task(world_task)
    play(env, world_task, format_sql_action(task.gold))
    for unreadable in ("", "```sql ```"):
        result = env.step(unreadable)
        assert result.observation == NOT_UNDERSTOOD and result.info["invalid"] and not result.done
    assert env.turns == 3 and env.step("submit").reward == 1.0
    assert NOT_UNDERSTOOD.startswith(
        "I don't understand your input.\n Your input shoud include the key world"
    )


@needs_server
def test_config_reaches_the_environment(intercode_mirror, sql_server):
    settings = {"max_turns": 10, "reward": "iou", "split": "paper", "truncation_reward": "latest"}
    environment = BENCHMARKS["intercode_sql"].env(intercode_mirror, settings, server=sql_server)
    try:
        assert environment.reward_kind == "iou" and environment.truncation_reward == "latest"
        assert environment.task_ids("test") == [str(i) for i in range(200)]
    finally:
        environment.close()
    with pytest.raises(ValueError, match="intercode_sql.reward"):
        make_env("intercode_sql", data_dir=intercode_mirror, server=sql_server, reward="order")


@needs_server
def test_snapshot_restore(env):
    task_id = env.task_ids("test")[1]
    gold = format_sql_action(env.task(task_id).gold)
    play(env, task_id, "SHOW TABLES", gold)
    snapshot = env.snapshot()
    assert env.step("SELECT 1").reward == 0.0
    assert env.step("submit").reward < 1.0
    env.restore(snapshot)
    assert env.actions == ["SHOW TABLES", gold] and env.turns == 2 and not env.done
    assert env.step("submit").reward == 1.0
    other = env.task_ids("test")[2]
    env.reset(other)
    env.restore(snapshot)  # across tasks
    assert env.task_id == task_id and env.step("submit").reward == 1.0


# --- sandbox attack suite ------------------------------------------------------------------------
REFUSED = "Error executing query: only read-only statements are allowed"
HIDDEN = "Error executing query: executable comments and optimizer hints"
STACKED = "Error executing query: only one statement per action is allowed"
DENIED = "command denied to user"
TIME_LIMIT = "Error executing query: Query execution was interrupted (max_statement_time exceeded)"

#: name -> (agent action, text its observation must hold; an observation starting with "[" must be equal)
ATTACKS = {
    # every statement kind that is not a read
    "drop": ("DROP TABLE city", REFUSED + " (SELECT, SHOW, DESCRIBE, EXPLAIN); refused: DROP"),
    "delete": ("DELETE FROM city", "refused: DELETE"),
    "insert": ("INSERT INTO city (Name) VALUES ('x')", "refused: INSERT"),
    "replace": ("REPLACE INTO city (ID, Name) VALUES (1, 'x')", "refused: REPLACE"),
    "update": ("UPDATE city SET Population = 0", "refused: UPDATE"),
    "truncate": ("TRUNCATE TABLE city", "refused: TRUNCATE"),
    "create table": ("CREATE TABLE x (a INT)", "refused: CREATE"),
    "create temporary table": ("CREATE TEMPORARY TABLE x AS SELECT * FROM city", "refused: CREATE"),
    "alter table": ("ALTER TABLE city ADD COLUMN x INT", "refused: ALTER"),
    "rename table": ("RENAME TABLE city TO town", "refused: RENAME"),
    "handler": ("HANDLER city OPEN", "refused: HANDLER"),
    "lock tables": ("LOCK TABLES city WRITE", "refused: LOCK"),
    "load data": ("LOAD DATA INFILE '/etc/passwd' INTO TABLE city", "refused: LOAD"),
    "load data local": ("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE city", "refused: LOAD"),
    "prepare": ("PREPARE s FROM 'DROP TABLE city'", "refused: PREPARE"),
    "execute immediate": ("EXECUTE IMMEDIATE 'DROP TABLE city'", "refused: EXECUTE"),
    "call": ("CALL mysql.x()", "refused: CALL"),
    "do": ("DO SLEEP(100)", "refused: DO"),
    "use": ("USE flight_2", "refused: USE"),
    "kill": ("KILL CONNECTION_ID()", "refused: KILL"),
    "flush": ("FLUSH PRIVILEGES", "refused: FLUSH"),
    "transaction": ("START TRANSACTION", "refused: START"),
    "shutdown": ("SHUTDOWN", "refused: SHUTDOWN"),
    "optimize": ("OPTIMIZE TABLE city", "refused: OPTIMIZE"),
    # privilege and account changes
    "grant": ("GRANT ALL PRIVILEGES ON *.* TO CURRENT_USER", "refused: GRANT"),
    "revoke": ("REVOKE SELECT ON world_1.* FROM CURRENT_USER", "refused: REVOKE"),
    "set password": ("SET PASSWORD = PASSWORD('x')", "refused: SET"),
    "alter user": ("ALTER USER CURRENT_USER IDENTIFIED BY 'x'", "refused: ALTER"),
    "create user": ("CREATE USER evil IDENTIFIED BY 'x'", "refused: CREATE"),
    "drop user": ("DROP USER CURRENT_USER", "refused: DROP"),
    "set role": ("SET ROLE NONE", "refused: SET"),
    "set variable": ("SET SESSION max_statement_time = 0", "refused: SET"),
    "set statement": ("SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(100)", "refused: SET"),
    # reads that write or keep state
    "into outfile": ("SELECT * FROM city INTO OUTFILE '/tmp/hpl-city'", "refused keyword: INTO"),
    "into dumpfile": (
        "SELECT Name FROM city LIMIT 1 INTO DUMPFILE '/tmp/hpl-city'",
        "refused keyword: DUMPFILE",
    ),
    "into variable": ("SELECT Name INTO @x FROM city LIMIT 1", "refused keyword: INTO"),
    "assignment": ("SELECT @x := 1", "Error executing query: assignments to variables are not allowed"),
    "for update": ("SELECT * FROM city FOR UPDATE", "refused keyword: UPDATE"),
    "share lock": ("SELECT * FROM city LOCK IN SHARE MODE", "refused keyword: LOCK"),
    # file access and other databases: privileges (no FILE, SELECT on world_1 only)
    "load_file": ("SELECT LOAD_FILE('/etc/passwd')", "[(None,)]"),
    "other database": ("SELECT * FROM flight_2.airports", DENIED),
    "mysql.user": ("SELECT * FROM mysql.user", DENIED),
    "describe other database": ("DESCRIBE flight_2.airports", DENIED),
    "show databases": ("SHOW DATABASES", "[('information_schema',), ('world_1',)]"),
    "other database's schema": (
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'flight_2'",
        "[(0,)]",
    ),
    # every executable comment form, optimizer hints, and real comments that hide a second statement
    "/*! */": ("/*! DROP TABLE city */", HIDDEN + " (/*! ... */) are not allowed"),
    "/*!NNNNN */": ("/*!50000 DROP TABLE city */", "(/*! ... */)"),
    "/*M! */ password": ("/*M! SET PASSWORD = PASSWORD('x'), @x = */ (SELECT 1)", "(/*M! ... */)"),
    "/*M!NNNNNN */ time limit": (
        "/*M!100000 SET STATEMENT max_statement_time=0 FOR */ SELECT SLEEP(12) FROM city LIMIT 4",
        "(/*M! ... */)",
    ),
    "/*M! */ time limit (issue)": (
        "/*M! SET STATEMENT max_statement_time=0 FOR */ SELECT SLEEP(12), Name FROM city LIMIT 4",
        "(/*M! ... */)",
    ),
    "/*m! */ lower case": ("/*m! SET PASSWORD = PASSWORD('x') */ SELECT 1", "(/*m! ... */)"),
    "/*! */ inside a select": ("SELECT 1 /*!, SLEEP(100) */", "(/*! ... */)"),
    "/*! */ inside a literal": ("SELECT 'a\\' /*!, SLEEP(100) */ -- '", "(/*! ... */)"),
    "/*+ */ hint": ("SELECT /*+ SET_VAR(max_statement_time=0) */ SLEEP(100)", "(/*+ ... */)"),
    # only an action's first line runs (IPR's rule), so the statement after the newline never reaches the
    # server; test_comment_hidden_statements_are_still_counted checks the statement check on its own
    "line comment hides a statement": ("SELECT 1 -- x\n; DROP TABLE city", "[(1,)]"),
    "hash comment hides a statement": ("SELECT 1 # x\n; DROP TABLE city", "[(1,)]"),
    "block comment before a write": ("/* SELECT */ DROP TABLE city", "refused: DROP"),
    # stacked statements
    "stacked write": ("SELECT 1; DROP TABLE city", STACKED + "; got 2"),
    "stacked reads": ("SELECT 1; SELECT 2", STACKED + "; got 2"),
    "stacked in a fence": ("```sql SELECT 1; DELETE FROM city ```", STACKED + "; got 2"),
    "stacked after a literal": ("SELECT ';'; DROP TABLE city", STACKED + "; got 2"),
    # time bombs (the server's limit, STATEMENT_TIME_S)
    "sleep": ("SELECT SLEEP(100)", TIME_LIMIT),
    "slow rows": ("SELECT SLEEP(0.6), Name FROM city LIMIT 10", TIME_LIMIT),
    "runaway join": ("SELECT count(*) FROM city a, city b, city c", TIME_LIMIT),
    "recursive cte": (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r, r AS s, r AS t",
        "Error executing query: ",
    ),
    "benchmark": ("SELECT BENCHMARK(1000000000000, MD5('x'))", "[(0,)]"),  # interrupted: 0
    # row bombs
    "million rows": ("SELECT a.ID, b.ID FROM city a, city b", "the result has more than 10000 rows"),
    "million rows, explicit limit": (
        "SELECT a.ID, b.ID FROM city a, city b LIMIT 2000000",
        "the result has more than 10000 rows",
    ),
    "wide rows": ("SELECT REPEAT('x', 1000000) FROM city", "the result is larger than 16 MB"),
    # invalid text
    "lone surrogate": ("SELECT '\udcff'", "the query is not valid text: character '\\udcff' at position 8"),
    "only a surrogate": ("\udcff", "the query is not valid text"),
    "surrogates in a fence": ("```sql SELECT Name FROM city WHERE Name = '\ud800' ```", "not valid text"),
    "huge text": ("SELECT " + "1" * 100_000, "the query is too long (100007 characters; at most 65536)"),
    "empty": ("", "I don't understand your input"),  # nothing to run: IPR's message
    "only a comment": ("-- nothing", "Error executing query: empty query"),
    "unterminated literal": ("SELECT 'abc", "You have an error in your SQL syntax"),
    "nul character": ("SELECT 'a\x00b'", "[('a\\x00b',)]"),
}


@pytest.fixture(scope="module")
def world_task(env):
    """A world_1 task whose gold query scores 1 (the attacks target world_1)."""
    return next(t for t in env.task_ids("train") if env.task(t).db == "world_1")


def account_state(env) -> list[tuple]:
    """Every agent account as the server stores it: password hash, limits, lock, and its grants."""
    connection = env.server.settings.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT User, Host, Priv FROM mysql.global_priv WHERE User LIKE 'hpl\\_ro\\_%' ORDER BY 1, 2"
            )
            accounts = list(cursor.fetchall())
            grants = []
            for user, host, _ in accounts:
                cursor.execute(f"SHOW GRANTS FOR '{user}'@'{host}'")
                grants.extend(cursor.fetchall())
    finally:
        connection.close()
    assert len(accounts) == 2 * len(env.sandbox.databases)
    return accounts + grants


@needs_server
@pytest.mark.parametrize("case", list(ATTACKS))
def test_sandbox_attack(env, world_task, case):
    """Each attack gets its observation within the time bound, and leaves the data, the accounts and the
    next normal episode as they were."""
    action, expected = ATTACKS[case]
    checksums, accounts = env.sandbox.table_checksums(), account_state(env)
    env.reset(world_task)
    began = time.monotonic()
    result = env.step(action)
    elapsed = time.monotonic() - began
    assert elapsed < BOUND_S, f"{case} took {elapsed:.1f} s"
    if expected.startswith("["):
        assert result.observation == expected
    else:
        assert expected in result.observation and result.info["invalid"], result.observation
    assert not result.done and result.reward == 0.0
    assert env.sandbox.table_checksums() == checksums
    assert account_state(env) == accounts
    assert play(env, world_task, format_sql_action(env.task(world_task).gold), "submit").reward == 1.0


@needs_server
def test_step_deadline_bounds_a_statement_that_lifts_the_server_limit(env):
    """Past the statement check, the client-side deadline still bounds a step: `SET STATEMENT` lifts
    max_statement_time, and 4 rows of SLEEP(1) would stream for 4 s; the step ends at the deadline and
    the server stops the query."""
    sandbox = env.sandbox
    sandbox.fresh_session("world_1")
    connection = sandbox._agent_connection("world_1")
    thread_id = connection.thread_id()
    began = time.monotonic()
    rows, error = sandbox._execute(
        "world_1", connection, "SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(1) FROM city LIMIT 4"
    )
    elapsed = time.monotonic() - began
    assert rows is None and "took longer than 2 s" in error
    assert sandbox.step_time_s == STATEMENT_TIME_S + 1.0 and elapsed < sandbox.step_time_s + 0.5
    assert _wait_until(lambda: thread_id not in _server_threads(env), 5.0)  # killed on the server too
    assert sandbox.run("world_1", "SELECT count(*) FROM city").ok


def _server_threads(env) -> set[int]:
    connection = env.server.settings.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM information_schema.processlist")
            return {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()


def _wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@needs_server
def test_a_new_environment_repairs_a_damaged_account(env, intercode_mirror, sql_server, world_task):
    """An account damaged before the job (its password changed, a grant added, limits set, locked: state
    that outlives sessions, and jobs on an external server) is put back when an environment starts."""
    accounts = account_state(env)
    user = account_name("world_1")
    admin = sql_server.settings.connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"SET PASSWORD FOR '{user}'@'localhost' = PASSWORD('changed')")
            cursor.execute(f"GRANT SELECT ON flight_2.* TO '{user}'@'localhost'")
            cursor.execute(f"ALTER USER '{user}'@'%' WITH MAX_USER_CONNECTIONS 1 ACCOUNT LOCK")
        with pytest.raises(pymysql.MySQLError, match="Access denied"):
            sql_server.settings.as_user(user, READ_ONLY_PASSWORD).connect(database="world_1")
        fresh = make_env("intercode_sql", data_dir=intercode_mirror, server=sql_server)
        try:
            gold = format_sql_action(fresh.task(world_task).gold)
            assert play(fresh, world_task, gold, "submit").reward == 1.0
        finally:
            fresh.close()
    finally:
        admin.close()
    assert _without_password_dates(account_state(env)) == _without_password_dates(accounts)


@needs_server
def test_agent_sessions_read_literals_as_the_statement_check_does(sql_server):
    """A server whose global sql_mode moves literal ends (NO_BACKSLASH_ESCAPES, ANSI_QUOTES) would run as
    code what the check read as a string: `'a\\', @x := 1 -- '` assigns @x. Agent sessions drop those
    modes, so the server reads one string, as the check does."""
    sneaky = "SELECT 'a\\', @x := 1 -- '"
    assert read_only_violation(sneaky) is None  # the check sees a single literal
    admin = sql_server.settings.connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT @@GLOBAL.sql_mode")
            (mode,) = cursor.fetchone()
            cursor.execute(f"SET GLOBAL sql_mode = '{mode},NO_BACKSLASH_ESCAPES,ANSI'")
        sandbox = Sandbox(sql_server.settings, ["world_1"]).prepare()  # grants print "quoted" here
        try:
            assert sandbox.run("world_1", sneaky).rows == [("a', @x := 1 -- ",)]
            assert sandbox.run("world_1", "SELECT @x").rows == [(None,)]
        finally:
            sandbox.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"SET GLOBAL sql_mode = '{mode}'")
        admin.close()


def _without_password_dates(state: list[tuple]) -> list[tuple]:
    return [tuple(re.sub(r'"password_last_changed":\d+,', "", str(v)) for v in row) for row in state]


@needs_server
@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE city",
        "DELETE FROM city",
        "INSERT INTO city (Name) VALUES ('x')",
        "UPDATE city SET Population = 0",
        "GRANT SELECT ON world_1.* TO CURRENT_USER",
        "CREATE TABLE x (a INT)",
        "SELECT * FROM flight_2.airports",
    ],
)
def test_privileges_refuse_writes_without_the_statement_check(env, sql):
    """The second layer: the agent account itself cannot write, even if the statement check let SQL by."""
    before = env.sandbox.table_checksums()
    connection = env.server.settings.as_user(account_name("world_1"), READ_ONLY_PASSWORD).connect(
        database="world_1"
    )
    try:
        with connection.cursor() as cursor, pytest.raises(pymysql.MySQLError):
            cursor.execute(sql)
    finally:
        connection.close()
    assert env.sandbox.table_checksums() == before


@needs_server
def test_server_refuses_multi_statements(env):
    connection = env.server.settings.as_user(account_name("world_1"), READ_ONLY_PASSWORD).connect(
        database="world_1"
    )
    try:
        with connection.cursor() as cursor, pytest.raises(pymysql.MySQLError):
            cursor.execute("SELECT 1; SELECT 2")
    finally:
        connection.close()


@needs_server
def test_episodes_do_not_share_sessions(env, world_task):
    env.reset(world_task)
    env.step("SELECT LAST_INSERT_ID(42)")  # one of the few session values a SELECT can set
    env.reset(world_task)
    assert env.step("SELECT LAST_INSERT_ID()").observation == "[(0,)]"


# --- server lifecycle ----------------------------------------------------------------------------
@needs_server
def test_server_starts_and_stops_twice(tmp_path, dump):
    folder = tmp_path / "server"
    first = PrivateServer(folder, dump)
    with first:
        assert first.running and first.loaded_dump
        pid = first.process.pid
    assert not first.running and not _alive(pid)
    second = PrivateServer(folder, dump)
    with second:
        assert second.running and not second.loaded_dump  # the loaded data directory is reused
        connection = second.settings.connect(database="world_1")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM city")
            assert cursor.fetchone()[0] > 4000
        connection.close()
        pid = second.process.pid
    assert not _alive(pid)


@needs_server
def test_server_stops_after_an_exception(tmp_path, dump):
    server = PrivateServer(tmp_path / "server", dump)
    with pytest.raises(RuntimeError):
        with server:
            pid = server.process.pid
            raise RuntimeError("job failed")
    assert not _alive(pid)


@needs_server
def test_server_stops_on_sigterm(tmp_path, dump):
    folder = tmp_path / "server"
    script = textwrap.dedent(
        f"""
        import sys, time
        from hpl.intercode.server import PrivateServer
        with PrivateServer({str(folder)!r}, {str(dump)!r}) as server:
            print(server.process.pid, flush=True)
            time.sleep(120)
        """
    )
    job = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        pid = int(job.stdout.readline())
        assert _alive(pid)
        job.send_signal(signal.SIGTERM)
        assert job.wait(30) == 128 + signal.SIGTERM
        assert _wait_dead(pid)
    finally:
        if job.poll() is None:
            job.kill()


@needs_server
def test_one_server_per_folder(sql_server, dump):
    with pytest.raises(ServerError, match="another process"):
        PrivateServer(sql_server.folder, dump).start()


def test_missing_binary_names_the_package_and_the_setting(tmp_path):
    with pytest.raises(ServerError) as err:
        PrivateServer(tmp_path / "s", mariadbd=tmp_path / "no-such-mariadbd").start()
    assert "mariadb-server" in str(err.value) and "intercode_sql.server.host" in str(err.value)


@needs_server
def test_bad_dump_names_the_statement_and_line(tmp_path):
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE DATABASE IF NOT EXISTS good;\n-- comment\nSELEC broken FROM nowhere;\nSELECT 1;\n")
    with pytest.raises(DumpError) as err:
        with PrivateServer(tmp_path / "server", bad):
            pass
    message = str(err.value)
    assert "bad.sql:3:" in message and "SELEC broken FROM nowhere" in message


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie awaiting its parent counts as dead
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# --- expert data ---------------------------------------------------------------------------------
@needs_server
def test_expert_trajectories(env):
    records, card = expert_trajectories(env, source="gpt4+gold")
    train = set(env.task_ids("train"))
    assert records and card["total"] == len(records) == card["gpt4_kept"] + card["gold_kept"]
    for record in records:
        validate_trajectory(record)
        assert record["id"] in train and record["reward"] == 1.0
        assert record["conversations"][0]["value"] == env.instruction()
        actions = [react.parse_action(turn["value"]) for turn in record["conversations"][3::2]]
        assert actions[-1] == "submit" and all(actions)
    assert not card["gold_failed"]  # every scoreable gold query reproduces itself
    # replaying a trajectory's parsed actions through the environment earns its reward again
    sample = records[0]
    result = play(env, sample["id"], *[react.parse_action(t["value"]) for t in sample["conversations"][3::2]])
    assert result.done and result.reward == 1.0
    gpt4_only, gpt4_card = expert_trajectories(env, source="gpt4")
    assert len(gpt4_only) == gpt4_card["gpt4_kept"]
    assert abs(gpt4_card["gpt4_kept"] - card["gpt4_kept"]) <= 3  # tie-breaking GPT-4 queries (see expert.py)
    assert {r["source"] for r in gpt4_only} == {"gpt4"}


def test_schema_discovery_describes_the_tables_the_gold_query_names_in_its_order():
    from hpl.intercode.expert import schema_discovery

    gold = "SELECT T1.Name FROM poker_player AS T2 JOIN People AS T1 ON T1.People_ID = T2.People_ID"
    # a table named only inside a longer word (people_id) is not described twice, nor one never named
    assert schema_discovery(gold, ["people", "poker_player", "performance"]) == [
        "SHOW TABLES",
        "DESCRIBE poker_player",
        "DESCRIBE people",
        gold,
    ]


@needs_server
def test_schema_gold_experts_discover_the_schema_without_an_error(env):
    records, card = expert_trajectories(env, source="schema_gold")
    train = env.task_ids("train")
    assert card["schema_gold_kept"] == len(records) == len(train) and not card["schema_gold_failed"]
    for record in records:
        validate_trajectory(record)
        actions = [react.parse_action(turn["value"]) for turn in record["conversations"][3::2]]
        observations = [turn["value"] for turn in record["conversations"][4::2]]
        assert actions[0] == "```sql SHOW TABLES ```" and actions[-1] == "submit"
        assert actions[-2] == format_sql_action(env.task(record["id"]).gold)
        assert not any(o.startswith("Observation: Error") for o in observations), record["id"]
        # every described table is a name the SHOW TABLES answer listed
        for action in actions[1:-2]:
            assert action.startswith("```sql DESCRIBE ") and action.split()[2] in observations[0]


@needs_server
def test_every_schema_gold_query_passes_the_admissible_grammar(env):
    """The embedded default's expert data (schema_gold) stays on the path admissible decoding allows: its
    queries (SHOW TABLES, DESCRIBE, Spider's gold queries) are admitted by their database's lexicon and
    grammar, but the few that spell a name in mixed case ("petType", "template_ID"; measured: 11 of 2,812),
    which the lexicon's spelling rule refuses and the grammar admits."""
    records, _ = expert_trajectories(env, source="schema_gold")
    queries = [
        (record["db"], react.parse_action(turn["value"]))
        for record in records
        for turn in record["conversations"][3::2]
    ]
    queries = [(db, q) for db, q in queries if q != "submit"]
    assert len(queries) >= 2 * len(records)
    refused = [(db, q[len("```sql") :]) for db, q in queries if not lexicon_admits(env.lexicon(db), q[6:])]
    assert len(refused) <= 0.01 * len(queries)
    assert all(lexicon_admits(env.lexicon(db), q.lower()) for db, q in refused)


@needs_server
def test_a_failed_gold_query_does_not_break_the_later_ones(env, world_task):
    # the administrator session dies under the client (a dropped socket, as under heavy load) while
    # pymysql still calls it open: that gold query raises a server failure, the next one reconnects
    task = env.task(world_task)
    expected = env.sandbox.gold_rows(task.db, task.gold)
    env.sandbox._admin()._sock.shutdown(socket.SHUT_RDWR)
    with pytest.raises(ServerUnavailable, match="gold query on world_1"):
        env.sandbox.gold_rows(task.db, task.gold)
    assert env.sandbox.gold_rows(task.db, task.gold) == expected
    # through the environment the failure is recovered, and never cached as an empty gold answer
    env._gold.pop(world_task, None)
    env.sandbox._admin()._sock.shutdown(socket.SHUT_RDWR)
    assert env.gold_rows(world_task) == expected and env.gold_error(world_task) is None


# --- server failures inside an evaluation --------------------------------------------------------
class GoldAgent:
    """A scripted agent that sends the task's gold query, then submits; `before_call(n)` runs before its
    n-th batch of replies (where a test kills the server)."""

    def __init__(self, env, before_call=None) -> None:
        self.env, self.before_call, self.calls = env, before_call, 0

    def act(self, conversations, temperature=0.0, keys=None):
        if self.before_call is not None:
            self.before_call(self.calls)
        self.calls += 1
        replies = []
        for key in keys:
            run_id, turn = key.rsplit("/", 1)
            action = format_sql_action(self.env.task(run_id).gold) if turn == "0" else "submit"
            replies.append(f"Thought: step {turn}.\nAction: {action}")
        return replies


def evaluate(intercode_mirror, sql_server, tasks, kill_before_call=None, **settings):
    """Play `tasks` two at a time through `hpl.episodes.play`; return the rows it recorded and the
    exception that ended it (None when it finished)."""
    made = []

    def new_env():
        made.append(
            make_env(
                "intercode_sql",
                data_dir=intercode_mirror,
                server=sql_server,
                statement_time_s=STATEMENT_TIME_S,
                **settings,
            )
        )
        return made[-1]

    def before_call(n):
        if n == kill_before_call:
            kill_server(sql_server)

    rows = []
    agent = GoldAgent(make_env("intercode_sql", data_dir=intercode_mirror, server=sql_server), before_call)
    try:
        episodes.play(new_env, agent, tasks, parallel=2, on_finish=lambda e: rows.append(e.record()))
    except ServerError as err:
        return rows, err, made
    finally:
        agent.env.close()
    return rows, None, made


def kill_server(server: PrivateServer) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)


@pytest.fixture(scope="module")
def eval_tasks(env):
    return env.task_ids("test")[:6]


@needs_server
def test_a_killed_server_is_restarted_and_the_evaluation_gives_the_same_rows(
    env, intercode_mirror, sql_server, eval_tasks, world_task
):
    reference, failure, _ = evaluate(intercode_mirror, sql_server, eval_tasks)
    assert failure is None and [row["reward"] for row in reference] == [1.0] * 6
    pid, restarts = sql_server.process.pid, sql_server.restarts
    # killed after the first two episodes, with two more reset (their gold rows read) and about to query
    rows, failure, made = evaluate(intercode_mirror, sql_server, eval_tasks, kill_before_call=2)
    assert failure is None and rows == reference
    assert sql_server.running and sql_server.process.pid != pid and sql_server.restarts == restarts + 1
    assert sum(e._server_restarts for e in made) == 1  # one environment restarted it, the other reconnected
    # an environment that held sessions of the killed server reconnects and goes on
    result = play(env, world_task, format_sql_action(env.task(world_task).gold), "submit")
    assert result.reward == 1.0 and env._server_restarts == 0


@needs_server
def test_a_server_killed_during_a_query_gives_the_same_observation(env, sql_server, world_task):
    env.reset(world_task)
    action = "SELECT SLEEP(0.8), count(*) FROM city"
    undisturbed = env.step(action).observation
    killer = threading.Timer(0.3, kill_server, (sql_server,))
    killer.start()
    try:
        result = env.step(action)
    finally:
        killer.join()
    assert result.observation == undisturbed == "[(0, 4079)]" and not result.info["invalid"]
    assert env._server_restarts == 1 and sql_server.running


@needs_server
def test_a_server_that_may_not_restart_stops_the_job_naming_it(intercode_mirror, sql_server, eval_tasks):
    reference, _, _ = evaluate(intercode_mirror, sql_server, eval_tasks)
    try:
        rows, failure, _ = evaluate(
            intercode_mirror, sql_server, eval_tasks, kill_before_call=2, max_server_restarts=0
        )
    finally:
        sql_server.revive()  # for the tests after this one
    assert isinstance(failure, ServerError)
    message = str(failure)
    assert "max_server_restarts = 0" in message and "the private mariadbd in" in message
    assert str(sql_server.folder) in message and "exited with code -9" in message
    assert "ready for connections" in message  # the end of the server's log
    # only the episodes that ended before the kill were recorded, exactly as without a failure
    assert rows == reference[:2]


@needs_server
def test_a_hung_server_stops_the_job_naming_it(env, sql_server, world_task):
    """A server that stops answering (SIGSTOP) is not a slow query of the agent: the step raises
    ServerError naming the server, within the step deadline plus the bounded probes (about 10 s)."""
    env.reset(world_task)
    sql_server.process.send_signal(signal.SIGSTOP)
    began = time.monotonic()
    try:
        with pytest.raises(ServerError, match="does not answer") as failure:
            env.step("SELECT count(*) FROM city")
    finally:
        sql_server.process.send_signal(signal.SIGCONT)
    assert time.monotonic() - began < 15.0
    assert str(sql_server.folder) in str(failure.value) and "running" in str(failure.value)
    assert not env.step("SELECT count(*) FROM city").info["invalid"]  # answers again once resumed


# --- the query lexicon of admissible actions (hpl.intercode.lexicon) -----------------------------
SINGER = SqlLexicon(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "JOIN",
        "ON",
        "AS",
        "COUNT",
        "ORDER",
        "BY",
        "DESC",
        "WITH",
        "AND",
        "DESCRIBE",
    ],
    ["singer", "song"],
    ["Singer_ID", "Name", "Net_Worth_Millions", "Citizenship", "Title"],
)


@pytest.mark.parametrize(
    "query",
    [
        " SELECT COUNT(*) FROM singer ```",
        " select name from SINGER where citizenship = 'Any words, even FROM country' ```",
        " SELECT T1.Name FROM singer AS T1 JOIN song AS T2 ON T1.Singer_ID = T2.Singer_ID ```",
        " SELECT s.Name FROM singer s ORDER BY s.Net_Worth_Millions DESC ```",  # alias before its declaration
        " SELECT COUNT(*) AS n FROM singer WHERE Net_Worth_Millions > 10.5 ```",  # AS declares, numbers free
        " WITH rich AS (SELECT Name FROM singer) SELECT Name FROM rich ```",  # a WITH table after FROM
        ' SELECT Name FROM singer WHERE Name = "x" ```  ',  # spaces after the close
        " DESCRIBE Singer ```",
    ],
)
def test_the_lexicon_admits_queries_on_its_database(query):
    assert lexicon_admits(SINGER, query)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        (" SELECT COUNT(*) FROM country ```", "a table of another database"),
        (" SELECT COUNT(*) FROM singers ```", "not a table"),
        (" SELECT COUNT(*) FROM Name ```", "a column where a table must be"),
        (" SELECT Continent FROM singer ```", "an unknown column"),
        (" SELECT hometown.Name FROM singer ```", "a long unknown qualifier"),
        (" SELECT Name FROM singer\n```", "a line break"),
        (" SELECT Name FROM singer ``` x", "text after the close"),
        (" DESCRIBE country ```", "describes a table of another database"),
        (" DESCRIBE 5 ```", "describes a number"),
        (" DESCRIBE ```", "describes nothing"),
        (" DESCRIBE singer FROM song ```", "a clause after DESCRIBE"),
        (" DESCRIBE singer s ```", "a second word after DESCRIBE's table"),
        (" DESCRIBE ('singer') ```", "a subquery or literal where DESCRIBE's table must be"),
        (" SELECT Name FROM singer; SELECT Title FROM song ```", "a second statement"),
        (" SELECT Name FROM singer WHERE Name = = 'x' ```", "two comparisons in a row"),
        (" SELECT Name FROM singer WHERE Name ! 'x' ```", "no comparison"),
        (" SELECT Name FROM singer WHERE Name < = 'x' ```", "an operator split by a space"),
        (
            " SELECT Name FROM singer WHERE Name = 'x' 'y' ```",
            "two literals in a row (MariaDB joins them; Spider never does)",
        ),
        (" SELECT Name FROM singer ORDER BY Name DESC DESC ```", "DESC twice"),
        (" SELECT Name FROM singer WHERE Net_Worth_Millions > 1.5.2 ```", "a number with two points"),
        (" SELECT Name FROM singer WHERE Name = '" + "x" * 41 + "' ```", "a literal beyond 40 characters"),
        (" SELECT Name FROM singer WHERE Name = 'x ``` it holds' ```", "the fence inside a literal"),
        (
            " SELECT Name % 'x' FROM singer ```",
            "%: no operator of Spider's (the tiny model's %' opened a literal)",
        ),
        (" SELECT Name FROM singer , song ```", "a comma join: Spider joins with JOIN"),
    ],
)
def test_the_lexicon_refuses(query, why):
    assert SINGER.extend(SINGER.start(), query) is None, why


def test_the_lexicon_follows_a_query_as_it_grows():
    state = SINGER.extend(SINGER.start(), " SELECT Na")
    assert state is not None and not SINGER.closed(state)
    assert SINGER.extend(state, "me FROM sing") is not None  # prefixes of known words grow
    assert SINGER.extend(state, "tion") is None  # "Nation" is no word of the database
    quoted = SINGER.extend(SINGER.start(), " SELECT Name FROM singer WHERE Name = 'Can")
    assert SINGER.extend(quoted, "ada") is not None  # a string literal is free


def test_a_schema_name_after_from_needs_its_table():
    lexicon = SqlLexicon(["SELECT", "FROM"], ["singer"], ["Name"], {"information_schema": ["COLUMNS"]})
    assert lexicon_admits(lexicon, " SELECT Name FROM information_schema.COLUMNS ```")
    assert lexicon.extend(lexicon.start(), " SELECT Name FROM information_schema ```") is None


def test_after_from_comes_a_table_or_a_subquery():
    assert lexicon_admits(SINGER, " SELECT Name FROM (SELECT Name FROM singer) AS T1 ```")
    assert SINGER.extend(SINGER.start(), " SELECT Name FROM 'singer'") is None
    assert SINGER.extend(SINGER.start(), " SELECT Name FROM , singer") is None
    lexicon = SqlLexicon(["SELECT", "FROM"], ["singer"], ["Name"], {"information_schema": ["COLUMNS"]})
    assert lexicon.extend(lexicon.start(), " SELECT Name FROM COLUMNS") is None  # only after its schema
    assert lexicon.extend(lexicon.start(), " SELECT Name FROM information_schema.Name") is None


MALFORMED = [  # the tiny model's kinds of syntax errors (docs/performance.md), on concert_singer
    "SELECT Name FROM singer ORDER BY Name) DESC",  # a parenthesis never opened
    "SELECT COUNT(*) FROM singer WHERE (Age > 30",  # one never closed
    "SELECT Name FROM singer FROM concert",  # a clause twice in one block
    "SELECT Name FROM singer ORDER BY Age WHERE Age > 30",  # clauses out of order
    "SELECT Name FROM singer WHERE",  # a clause without its operand
    "SELECT Name FROM singer WHERE Age >",
    "SELECT Name FROM singer GROUP BY",
    "SELECT Name, FROM singer,",
    "SELECT Name FROM singer WHERE Name = Joe'",  # a literal opened inside a word
    "SELECT Name FROM singer s' ORDER BY Name",
    "SELECT Name FROM singer Highschooler AS T1",  # an alias without AS, then AS (the tiny model's)
    "SELECT T1.Name FROM singer FROM_DAYS AS T1",  # a function as a word (the tiny model's FROM)
    "DESCRIBE",  # the schema_gold expert's DESCRIBE, without its table
    "DESCRIBE singer WHERE Age > 30",
    # the grammar's (hpl.intercode.grammar): the embedded SFT model's syntax errors on 200 test tasks
    "SELECT Name , * FROM singer 5",  # a number after the table
    "SELECT Name FROM (' AS T1",  # a literal where a subquery must be
    "SELECT count(*) FROM singer ORDER BY Name LIMIT 1 AND 150",  # a condition after LIMIT
    "SELECT Name FROM singer WHERE Age > 30 AND",
    "SELECT T1.Name , T1.Age > 1 FROM",  # FROM without its table
    "SELECT Name , * FROM singer",  # "*" after another column
]
WELL_FORMED = [
    "SELECT Name FROM singer WHERE Singer_ID IN (SELECT Singer_ID FROM singer_in_concert) ORDER BY Age DESC",
    "SELECT Name FROM singer WHERE Age > 30 UNION SELECT Name FROM singer WHERE Age < 20",
    "SELECT Country, COUNT(*) FROM singer GROUP BY Country HAVING COUNT(*) > 1 ORDER BY COUNT(*) DESC LIMIT 1",
    "SELECT T1.Name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.Singer_ID = T2.Singer_ID",
    "SELECT Name FROM (SELECT Name, Age FROM singer ORDER BY Age LIMIT 3) AS T1 WHERE Age > 20",
    "DESCRIBE singer_in_concert",
    "SELECT count(*), MAX(Age) AS max FROM singer",  # calls, and a function's name declared as a name
]


@pytest.mark.parametrize("query", MALFORMED)
def test_the_lexicon_refuses_a_query_the_server_cannot_parse(env, query):
    """A query the lexicon refuses for its structure (parentheses, clause order, a dangling end) is one the
    real server answers with a syntax error: the rule only saves a turn the query would have wasted."""
    outcome = env.sandbox.run("concert_singer", query)
    assert not outcome.ok and "error in your SQL syntax" in outcome.error, outcome.error
    assert not lexicon_admits(env.lexicon("concert_singer"), f" {query} ```")


def test_a_keyword_is_no_column_and_a_subquery_in_from_has_its_alias(env):
    """The tiny model's remaining invalid queries on 200 test tasks: keywords written as columns (the
    server answers "Unknown column") and a derived table without its alias (MariaDB refuses it)."""
    lexicon = env.lexicon("concert_singer")
    for query in ("SELECT max(weight_string) FROM singer", "SELECT Name , Level FROM singer"):
        assert not env.sandbox.run("concert_singer", query).ok
        assert not lexicon_admits(lexicon, f" {query} ```"), query
    derived = "SELECT max(Age) FROM (SELECT Age FROM singer)"
    assert not env.sandbox.run("concert_singer", derived).ok
    assert not lexicon_admits(lexicon, f" {derived} ```")
    assert lexicon_admits(lexicon, f" {derived} AS T1 ```")
    called = "SELECT TIMESTAMPDIFF(YEAR, Song_release_year, Song_release_year) FROM singer"
    assert env.sandbox.run("concert_singer", called).ok
    assert lexicon_admits(lexicon, f" {called} ```")  # an argument word, a function called


@pytest.mark.parametrize("query", WELL_FORMED)
def test_the_lexicon_admits_subqueries_unions_and_every_clause(env, query):
    assert env.sandbox.run("concert_singer", query).ok
    assert lexicon_admits(env.lexicon("concert_singer"), f" {query} ```")


def test_the_grammar_reads_a_statement_as_lalr_states():
    """The grammar's state is the LALR stack: hashable, equal after equal prefixes, so a lexicon state that
    holds it is cached like any other; it says which terminals may come next and when the statement ends."""
    from hpl.intercode import grammar

    def read(*symbols):
        stack = grammar.start()
        for symbol in symbols:
            stack = stack and grammar.feed(stack, symbol)
        return stack

    where = read("SELECT", "NAME", "FROM", "NAME", "WHERE")
    assert where == read("SELECT", "NAME", "FROM", "NAME", "WHERE") and hash(where)
    assert not grammar.complete(where) and grammar.NAME in grammar.accepts(where)
    assert "LIMIT" not in grammar.accepts(where)  # WHERE wants its condition first
    assert grammar.complete(read("SELECT", "NAME", "FROM", "NAME", "WHERE", "NAME", "COMPARISON", "STRING"))
    assert grammar.complete(read("SHOW", "TABLES")) and grammar.complete(
        read("DESCRIBE", "NAME", "SEMICOLON")
    )
    assert read("SELECT", "NAME", "FROM", "NAME", "SEMICOLON", "SELECT") is None  # one statement
    assert read("NAME") is None  # HANDLER, SET, ... : no statement of the grammar
    assert grammar.terminal("Select") == "SELECT" and grammar.terminal("T1") == grammar.NAME
    assert grammar.terminal("3") == grammar.NUMBER


def test_a_word_that_no_rule_can_finish_is_stopped_at_once():
    """FROM_UNIXTIME starts like FROM: after a table, FROM may not come again and the function may not
    be called, so its prefix must be refused as soon as no word completes it. Otherwise the model writes
    into a word it cannot end and no token is left (measured: 95 of 200 test episodes ended so)."""
    words = ["SELECT", "FROM", "WHERE", "FROM_UNIXTIME"]
    lexicon = SqlLexicon(words, ["singer"], ["Name"], functions=["FROM_UNIXTIME"])
    assert lexicon.extend(lexicon.start(), " SELECT Name FROM singer FROM") is None
    assert lexicon.extend(lexicon.start(), " SELECT FROM_UNIXTIME(Name) FROM singer WH") is not None
    schema = SqlLexicon(["DESCRIBE"], ["singer"], ["Name"], {"information_schema": ["COLUMNS"]})
    assert lexicon_admits(schema, " DESCRIBE information_schema.COLUMNS ```")


@needs_server
def test_every_prefix_the_lexicon_allows_can_go_on(env):
    """No dead end: along random walks over the characters the lexicon allows, some character is always
    allowed until the query is closed, on a real database's lexicon (MariaDB's keywords and functions)."""
    import random

    lexicon = env.lexicon("concert_singer")
    alphabet = string.ascii_letters + string.digits + "_ .,()*=<>!+-/%;'\"`"
    rng = random.Random(0)
    for _ in range(40):
        state, text = lexicon.start(), ""
        while not lexicon.closed(state) and len(text) < 60:
            allowed = [c for c in alphabet if lexicon.extend(state, c) is not None]
            assert allowed, f"no character may follow {text!r}"
            char = rng.choice(allowed)
            state, text = lexicon.extend(state, char), text + char


def test_a_query_closes_only_when_whole():
    state = SINGER.extend(SINGER.start(), " SELECT Name FROM singer WHERE Name = ")
    assert SINGER.extend(state, "```") is None  # "= " wants its operand first
    assert lexicon_admits(SINGER, " SELECT Name FROM singer WHERE Name = 'x' ```")
    assert SINGER.extend(SINGER.start(), " ```") is None  # an empty query


def test_a_server_without_keyword_lists_is_named(env, monkeypatch):
    """Admissible queries need the server's keyword lists; a server without them (MySQL, MariaDB < 10.6)
    stops the job with a message that names them."""

    def refuse(query, args=()):
        raise pymysql.err.ProgrammingError(1109, "Unknown table 'KEYWORDS' in information_schema")

    monkeypatch.setattr(env.sandbox, "_admin_rows", refuse)
    with pytest.raises(ServerError, match="information_schema.KEYWORDS and SQL_FUNCTIONS"):
        env.sandbox.server_words()
