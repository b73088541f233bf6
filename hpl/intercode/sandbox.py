"""Where agent SQL runs: read-only, one statement, bounded in time and size, one database per account.

Agents (and the models being trained) write arbitrary SQL, including DROP TABLE. InterCode ran it as an
administrator in a throw-away container; here one server serves thousands of episodes and Monte Carlo
rollouts, so no statement may change anything. Two independent layers enforce that:

1. Privileges. Each Spider database has its own account holding only SELECT on that database (so it also
   cannot see the other 19). DESCRIBE, SHOW and EXPLAIN need nothing more. Writes fail at the server.
2. A statement check (`hpl.intercode.statements`): one statement per action, whose first keyword is
   SELECT/WITH/SHOW/DESCRIBE/DESC/EXPLAIN/VALUES and which holds no write, lock, INTO or `:=`. This gives
   a clear observation, and refuses what privileges cannot: SET (session variables) and variable
   assignment, so that a session has no state an episode could leave to the next.

Bounds: every agent session runs with `max_statement_time` (MariaDB; MySQL's `max_execution_time`), which
also interrupts SLEEP and runaway joins or recursive CTEs; `sql_select_limit` and an unbuffered cursor read
at most `max_rows + 1` rows (more is an error, and the query is killed); the client's read timeout is a last
backstop. Connections are made without CLIENT_MULTI_STATEMENTS, so the server itself refuses `a; b`.

Gold queries run on a separate administrator connection (trusted text, results cached by the caller).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pymysql
import pymysql.cursors

from hpl.intercode.server import ConnectionSettings, ServerError, _error_text
from hpl.intercode.statements import read_only_violation, split_statements, text_violation

#: the agent accounts' password; they can read public Spider data only, through a private socket by default
READ_ONLY_PASSWORD = "hpl-intercode-read-only"
ERROR_PREFIX = "Error executing query: "  # InterCode's prefix for every failed action


@dataclass(frozen=True)
class QueryOutcome:
    """What one statement gave: its rows, or the error text (exactly one of them is set)."""

    rows: list[tuple] | None
    error: str | None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def account_name(db: str) -> str:
    """A short, stable account name per database (MySQL 8 allows 32 characters)."""
    return "hpl_ro_" + hashlib.sha1(db.lower().encode()).hexdigest()[:12]


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class Sandbox:
    """Runs agent statements on a server read-only (see the module docstring)."""

    ACCOUNT_HOSTS = ("localhost", "%")  # socket clients match 'localhost'; TCP clients (Docker) match '%'

    def __init__(
        self,
        admin: ConnectionSettings,
        databases: Iterable[str],
        *,
        statement_time_s: float = 5.0,
        max_rows: int = 10_000,
    ) -> None:
        self.admin = admin
        self.databases = sorted(set(databases))
        self.statement_time_s = float(statement_time_s)
        self.max_rows = int(max_rows)
        self._admin_connection: Any = None
        self._mariadb = True
        self._agent: dict[str, Any] = {}  # db -> open agent connection
        self._dirty: set[str] = set()  # dbs whose session ran an agent statement since the last fresh one
        self._prepared = False

    # -- setup -----------------------------------------------------------------------------------------
    def prepare(self) -> Sandbox:
        """Create the read-only accounts (idempotent: several environments may share one server)."""
        if self._prepared:
            return self
        connection = self._admin()
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            self._mariadb = "mariadb" in cursor.fetchone()[0].lower()
            for db in self.databases:
                for host in self.ACCOUNT_HOSTS:
                    account = f"'{account_name(db)}'@'{host}'"
                    try:
                        password = connection.escape(READ_ONLY_PASSWORD)
                        cursor.execute(f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}")
                        cursor.execute(f"GRANT SELECT ON {_quote_identifier(db)}.* TO {account}")
                    except pymysql.MySQLError as err:
                        raise ServerError(
                            f"cannot create the read-only SQL account {account} for {db}: {_error_text(err)} "
                            "(the configured account needs CREATE USER and GRANT OPTION)"
                        ) from None
        self._prepared = True
        return self

    def _admin(self) -> Any:
        if self._admin_connection is None or not self._admin_connection.open:
            self._admin_connection = self.admin.connect()
        return self._admin_connection

    def _session_limits(self) -> str:
        """The statement run at every agent login: time limit and row limit for this session."""
        if self._mariadb:
            timer = f"max_statement_time = {self.statement_time_s:.3f}"
        else:
            timer = f"max_execution_time = {int(self.statement_time_s * 1000)}"
        return f"SET SESSION {timer}, sql_select_limit = {self.max_rows + 1}"

    def _connect_agent(self, db: str) -> Any:
        return self.admin.as_user(account_name(db), READ_ONLY_PASSWORD).connect(
            database=db,
            init_command=self._session_limits(),
            read_timeout=self.statement_time_s + 10,
            write_timeout=self.statement_time_s + 10,
            cursorclass=pymysql.cursors.SSCursor,
        )

    def _agent_connection(self, db: str) -> Any:
        if db not in self.databases:
            raise KeyError(f"not a sandboxed database: {db}")
        self.prepare()
        connection = self._agent.get(db)
        if connection is None or not connection.open:
            connection = self._connect_agent(db)
            self._agent[db] = connection
        return connection

    def fresh_session(self, db: str) -> None:
        """Make the next statement on `db` run in a session no earlier episode has touched."""
        if db in self._dirty:
            self._drop(db)
            self._dirty.discard(db)

    def _drop(self, db: str) -> None:
        connection = self._agent.pop(db, None)
        if connection is None:
            return
        try:
            connection.close()
        except Exception:  # a half-read result or a dead socket: close the socket itself
            connection._force_close()

    # -- agent statements ------------------------------------------------------------------------------
    def run(self, db: str, sql: str) -> QueryOutcome:
        """Run one agent statement on `db`; every refusal or failure is an error outcome, never an exception."""
        began = time.perf_counter()
        refusal = self.refusal(sql)
        if refusal is not None:
            return QueryOutcome(None, ERROR_PREFIX + refusal, time.perf_counter() - began)
        try:
            connection = self._agent_connection(db)
        except pymysql.MySQLError as err:
            return QueryOutcome(None, ERROR_PREFIX + _message(err), time.perf_counter() - began)
        self._dirty.add(db)
        rows, error = self._execute(db, connection, split_statements(sql)[0].text)
        return QueryOutcome(
            rows, None if error is None else ERROR_PREFIX + error, time.perf_counter() - began
        )

    @staticmethod
    def refusal(sql: str) -> str | None:
        """Why the statement check refuses `sql` (None: it may run)."""
        invalid = text_violation(sql)
        if invalid is not None:
            return invalid
        statements = split_statements(sql)
        if not statements:
            return "empty query"
        if len(statements) > 1:
            return f"only one statement per action is allowed; got {len(statements)}"
        return read_only_violation(statements[0].text)

    def _execute(self, db: str, connection: Any, sql: str) -> tuple[list[tuple] | None, str | None]:
        cursor = connection.cursor()
        try:
            cursor.execute(sql)
            if cursor.description is None:
                return [], None
            rows = cursor.fetchmany(self.max_rows + 1)
            if len(rows) > self.max_rows:
                self._kill(db, connection)
                return None, (
                    f"the result has more than {self.max_rows} rows; this environment returns at most "
                    f"{self.max_rows} (use WHERE, GROUP BY or LIMIT)"
                )
            cursor.close()
            return list(rows), None
        except pymysql.MySQLError as err:
            # a failed statement may leave a half-read result or a still-running query behind: the session
            # is replaced (about a millisecond), and killed first where the server may still be working
            if _is_disconnect(err) or _is_interrupt(err):
                self._kill(db, connection)
            else:
                self._drop(db)
            return None, _message(err)

    def _kill(self, db: str, connection: Any) -> None:
        """Stop whatever the agent session still runs and forget the connection."""
        thread_id = connection.thread_id()
        try:
            with self._admin().cursor() as cursor:
                cursor.execute(f"KILL {int(thread_id)}")
        except pymysql.MySQLError:
            pass  # already gone
        self._agent.pop(db, None)
        if getattr(connection, "_result", None) is not None:
            connection._result.unbuffered_active = False  # nothing left to drain from a closed socket
        connection._force_close()

    # -- gold queries ----------------------------------------------------------------------------------
    def gold_rows(self, db: str, query: str) -> list[tuple]:
        """The gold query's rows, on the administrator connection (raises pymysql.MySQLError)."""
        connection = self._admin()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"USE {_quote_identifier(db)}")
                cursor.execute(query)
                return list(cursor.fetchall()) if cursor.description is not None else []
        except pymysql.MySQLError:
            # a failed query can leave the shared administrator session half-read, out of sync or timed
            # out while `.open` still says True: replace it, so one failure (a slow gold query on a loaded
            # machine) cannot turn every later gold query of the job into an error
            self._drop_admin()
            raise

    def _drop_admin(self) -> None:
        connection, self._admin_connection = self._admin_connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # a dead socket or an unread result: close the socket itself
                connection._force_close()

    # -- bookkeeping -----------------------------------------------------------------------------------
    def row_counts(self) -> dict[str, int]:
        """Exact row count of every table of the sandboxed databases (tests use it to show nothing changed)."""
        counts = {}
        connection = self._admin()
        with connection.cursor() as cursor:
            for db in self.databases:
                cursor.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
                    (db,),
                )
                for (table,) in cursor.fetchall():
                    cursor.execute(f"SELECT COUNT(*) FROM {_quote_identifier(db)}.{_quote_identifier(table)}")
                    counts[f"{db}.{table}"] = cursor.fetchone()[0]
        return counts

    def close(self) -> None:
        for db in list(self._agent):
            self._drop(db)
        if self._admin_connection is not None:
            try:
                self._admin_connection.close()
            except Exception:
                pass
            self._admin_connection = None


def _message(err: BaseException) -> str:
    """The server's message without its number, as InterCode shows it (`err.msg`)."""
    args = getattr(err, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return args[1]
    return str(err)


def _is_interrupt(err: BaseException) -> bool:
    """Server errors for a statement stopped by a time limit or a kill."""
    code = err.args[0] if getattr(err, "args", None) else None
    return code in (1317, 1969, 3024)


def _is_disconnect(err: BaseException) -> bool:
    """Client-side errors after which the connection cannot be reused (lost, timed out, interrupted read)."""
    code = err.args[0] if getattr(err, "args", None) else None
    return isinstance(err, pymysql.err.InterfaceError) or code in (0, 2006, 2013, 2014, 2055)
