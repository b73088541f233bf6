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
at most `max_rows + 1` rows and `max_result_bytes` (more is an error, and the query is killed). A step's
total time is bounded on the client too (`step_time_s`, `_bound_reads`): a statement the check failed to
refuse could lift the server's limit (`SET STATEMENT max_statement_time=0 FOR SELECT SLEEP(12) ... LIMIT 4`
streamed for 48 s), and a hung server enforces nothing. Connections are made without
CLIENT_MULTI_STATEMENTS, so the server itself refuses `a; b`.

Account state outlives sessions and jobs (on an external server): `prepare()` resets each account's
password, limits and grants, so an account damaged earlier (e.g. by `SET PASSWORD`, which needs no
privilege) is repaired at the next start instead of failing every later login.

Server failures are not agent failures: when the server cannot be reached or drops a session the sandbox
did not end itself, `run` and `gold_rows` raise `ServerUnavailable` instead of answering with an error
observation, so the caller restarts the server and runs the call again, or stops the job
(`hpl.intercode.env`).

Gold queries run on a separate administrator connection (trusted text, results cached by the caller).
"""

from __future__ import annotations

import hashlib
import re
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
#: client-side margin over the server's statement limit: the server's own (clearer) error comes first
STEP_MARGIN_S = 1.0
DEADLINE_SLACK_S = 0.05  # a read that fails this close to the deadline timed out at the deadline
MAX_RESULT_BYTES = 16 * 2**20  # row data per action; the largest gold result holds about 16 kB


_PASSWORD_CLAUSE = re.compile(r" IDENTIFIED BY PASSWORD '[^']*'", re.IGNORECASE)


class ServerUnavailable(ServerError):
    """The SQL server could not be reached or dropped a session: an infrastructure failure, not the agent's."""


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
        step_time_s: float | None = None,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        self.admin = admin
        self.databases = sorted(set(databases))
        self.statement_time_s = float(statement_time_s)
        self.max_rows = int(max_rows)
        self.step_time_s = (
            float(step_time_s) if step_time_s is not None else self.statement_time_s + STEP_MARGIN_S
        )
        self.max_result_bytes = int(max_result_bytes)
        self._admin_connection: Any = None
        self._mariadb = True
        self._sql_mode: str | None = None  # the agent sessions' sql_mode where the server's must change
        self._agent: dict[str, Any] = {}  # db -> open agent connection
        self._dirty: set[str] = set()  # dbs whose session ran an agent statement since the last fresh one
        self._prepared = False

    # -- setup -----------------------------------------------------------------------------------------
    def prepare(self) -> Sandbox:
        """Create or repair the read-only accounts (idempotent: several environments may share one server)."""
        if self._prepared:
            return self
        try:
            connection = self._admin()
        except pymysql.MySQLError as err:
            raise ServerUnavailable(
                f"cannot reach the SQL server as {self.admin.user!r}: {_error_text(err)}"
            ) from None
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION(), @@GLOBAL.sql_mode")
            version, sql_mode = cursor.fetchone()
            self._mariadb = "mariadb" in version.lower()
            self._sql_mode = _scanned_sql_mode(sql_mode)
            for db in self.databases:
                for host in self.ACCOUNT_HOSTS:
                    account = f"'{account_name(db)}'@'{host}'"
                    try:
                        self._prepare_account(connection, cursor, account, db)
                    except pymysql.MySQLError as err:
                        raise ServerError(
                            f"cannot create the read-only SQL account {account} for {db}: {_error_text(err)} "
                            "(the configured account needs CREATE USER and GRANT OPTION)"
                        ) from None
        self._prepared = True
        return self

    def _prepare_account(self, connection: Any, cursor: Any, account: str, db: str) -> None:
        """Create `account`, or put an existing one back as this sandbox needs it: its password (an agent
        session may change its own), no resource limits, unlocked, and SELECT on `db` as its only grant."""
        password = connection.escape(READ_ONLY_PASSWORD)
        cursor.execute(f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}")
        cursor.execute(
            f"ALTER USER {account} IDENTIFIED BY {password} REQUIRE NONE WITH MAX_QUERIES_PER_HOUR 0 "
            "MAX_UPDATES_PER_HOUR 0 MAX_CONNECTIONS_PER_HOUR 0 MAX_USER_CONNECTIONS 0 ACCOUNT UNLOCK"
        )
        if self._grants(cursor, account) == self._wanted_grants(account, db):
            return  # the common case: no REVOKE, so sessions of other environments never lose SELECT
        cursor.execute(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}")
        cursor.execute(f"GRANT SELECT ON {_quote_identifier(db)}.* TO {account}")
        left = self._grants(cursor, account) - self._wanted_grants(account, db)
        if left:
            raise ServerError(
                f"the read-only SQL account {account} holds grants the sandbox cannot revoke: "
                f"{'; '.join(sorted(left))} (drop the account; it is recreated at the next start)"
            )

    @staticmethod
    def _grants(cursor: Any, account: str) -> set[str]:
        """The account's grants as SHOW GRANTS prints them, without the password hash (MariaDB prints it),
        lower-cased (the server prints database names lower-cased under lower_case_table_names=1), with
        backquotes (a server in ANSI_QUOTES mode prints double quotes)."""
        cursor.execute(f"SHOW GRANTS FOR {account}")
        grants = (_PASSWORD_CLAUSE.sub("", " ".join(row[0].split())) for row in cursor.fetchall())
        return {grant.replace('"', "`").lower() for grant in grants}

    @staticmethod
    def _wanted_grants(account: str, db: str) -> set[str]:
        user, host = (part.strip("'") for part in account.split("@"))
        return {
            f"grant usage on *.* to `{user}`@`{host}`".lower(),
            f"grant select on {_quote_identifier(db)}.* to `{user}`@`{host}`".lower(),
        }

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
        limits = f"SET SESSION {timer}, sql_select_limit = {self.max_rows + 1}"
        return limits if self._sql_mode is None else f"{limits}, sql_mode = '{self._sql_mode}'"

    def _connect_agent(self, db: str) -> Any:
        return self.admin.as_user(account_name(db), READ_ONLY_PASSWORD).connect(
            database=db,
            init_command=self._session_limits(),
            # the login's handshake and init_command are reads too: a hung server must not hold a step
            # longer than the step's own limit (each statement then bounds its reads by `_bound_reads`)
            connect_timeout=min(self.admin.connect_timeout, self.step_time_s),
            read_timeout=self.step_time_s,
            write_timeout=self.step_time_s,
            cursorclass=pymysql.cursors.SSCursor,
        )

    def _agent_connection(self, db: str) -> Any:
        if db not in self.databases:
            raise KeyError(f"not a sandboxed database: {db}")
        self.prepare()
        connection = self._agent.get(db)
        if connection is None or not connection.open:
            try:
                connection = self._connect_agent(db)
            except pymysql.MySQLError as err:
                # the login depends on the server and the account, never on the agent's text
                raise ServerUnavailable(
                    f"cannot log in to the SQL server as {account_name(db)} for {db}: {_error_text(err)}"
                ) from None
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

    def reset(self) -> None:
        """Forget every connection and the prepared accounts (after a server restart)."""
        self.close()
        self._dirty.clear()
        self._prepared = False

    # -- agent statements ------------------------------------------------------------------------------
    def run(self, db: str, sql: str) -> QueryOutcome:
        """Run one agent statement on `db`. Whatever the agent wrote, a refusal or failure is an error
        outcome; only a server failure raises (`ServerUnavailable`)."""
        began = time.perf_counter()
        refusal = self.refusal(sql)
        if refusal is not None:
            return QueryOutcome(None, ERROR_PREFIX + refusal, time.perf_counter() - began)
        connection = self._agent_connection(db)
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
        deadline = time.monotonic() + self.step_time_s
        cursor = connection.cursor()
        try:
            _bound_reads(connection, deadline)
            cursor.execute(sql)
            rows, too_large = self._fetch(cursor, connection, deadline)
        except pymysql.MySQLError as err:
            if time.monotonic() >= deadline - DEADLINE_SLACK_S and _is_server_failure(err):
                too_large = None  # a read that timed out at the deadline: handled below
                rows = None
            else:
                return None, self._failed(db, connection, err)
        if rows is None:
            self._kill(db, connection)
            return None, too_large or (
                f"the query took longer than {self.step_time_s:g} s, this environment's limit per action "
                "(it was stopped)"
            )
        cursor.close()
        return rows, None

    def _fetch(self, cursor: Any, connection: Any, deadline: float) -> tuple[list[tuple] | None, str | None]:
        """Read the rows within `max_rows`, `max_result_bytes` and the deadline: (rows, None), or (None,
        why not) where None means the deadline passed."""
        if cursor.description is None:
            return [], None
        rows: list[tuple] = []
        size = 0
        while True:
            if time.monotonic() >= deadline:
                return None, None
            _bound_reads(connection, deadline)
            row = cursor.fetchone()
            if row is None:
                return rows, None
            rows.append(row)
            size += _row_bytes(row)
            if len(rows) > self.max_rows:
                return None, (
                    f"the result has more than {self.max_rows} rows; this environment returns at most "
                    f"{self.max_rows} (use WHERE, GROUP BY or LIMIT)"
                )
            if size > self.max_result_bytes:
                return None, (
                    f"the result is larger than {self.max_result_bytes // 2**20} MB; select fewer or "
                    "shorter values"
                )

    def _failed(self, db: str, connection: Any, err: pymysql.MySQLError) -> str:
        """The observation for a failed agent statement, or ServerUnavailable when the server failed."""
        if _is_interrupt(err):  # the server's own time limit: it may still be cleaning up
            self._kill(db, connection)
            return _message(err)
        if _is_server_failure(err):
            # the sandbox ends sessions only through the deadline and the size limits, handled above: a
            # session lost otherwise means the server died, restarted or dropped us
            self._forget(db, connection)
            raise ServerUnavailable(
                f"the SQL server dropped the session of {db}: {_error_text(err)}"
            ) from None
        # a failed statement may leave a half-read result behind: the session is replaced (a millisecond)
        self._drop(db)
        return _message(err)

    def _kill(self, db: str, connection: Any) -> None:
        """Stop whatever the agent session still runs and forget the connection; ServerUnavailable when the
        server does not answer the KILL (then the statement was slow because the server hangs, which is
        no observation for the agent). The KILL goes through a connection of its own with short timeouts:
        the shared administrator session may be the one that hangs."""
        self._forget(db, connection)
        try:
            killer = self.admin.connect(connect_timeout=2, read_timeout=2, write_timeout=2)
            try:
                with killer.cursor() as cursor:
                    cursor.execute(f"KILL {int(connection.thread_id())}")
            finally:
                killer.close()
        except pymysql.MySQLError as err:
            if _is_server_failure(err):
                raise ServerUnavailable(
                    f"the SQL server did not answer while stopping an agent query on {db}: {_error_text(err)}"
                ) from None
            # otherwise (unknown thread id) the session had ended already

    def _forget(self, db: str, connection: Any) -> None:
        """Close a connection whose socket may be dead or mid-result, without talking to the server."""
        if self._agent.get(db) is connection:
            del self._agent[db]
        if getattr(connection, "_result", None) is not None:
            connection._result.unbuffered_active = False  # nothing left to drain from a closed socket
        connection._force_close()

    # -- gold queries ----------------------------------------------------------------------------------
    def gold_rows(self, db: str, query: str) -> list[tuple]:
        """The gold query's rows, on the administrator connection. An error of the query itself raises
        pymysql.MySQLError; a server that cannot be reached or drops the session, ServerUnavailable."""
        try:
            connection = self._admin()
            with connection.cursor() as cursor:
                cursor.execute(f"USE {_quote_identifier(db)}")
                cursor.execute(query)
                return list(cursor.fetchall()) if cursor.description is not None else []
        except pymysql.MySQLError as err:
            # a failed query can leave the shared administrator session half-read, out of sync or timed
            # out while `.open` still says True: replace it, so one failure (a slow gold query on a loaded
            # machine) cannot turn every later gold query of the job into an error
            self._drop_admin()
            if _is_server_failure(err):
                raise ServerUnavailable(
                    f"the SQL server failed during a gold query on {db}: {_error_text(err)}"
                ) from None
            raise

    # -- the words a query may use (hpl.intercode.lexicon) ----------------------------------------------
    def server_words(self) -> set[str]:
        """The SQL keywords and functions the server itself knows (MariaDB >= 10.6 lists them in
        information_schema.KEYWORDS and SQL_FUNCTIONS)."""
        query = (
            "SELECT WORD FROM information_schema.KEYWORDS "
            "UNION SELECT FUNCTION FROM information_schema.SQL_FUNCTIONS"
        )
        try:
            return {word for (word,) in self._admin_rows(query)}
        except pymysql.MySQLError as err:
            raise ServerError(
                f"intercode_sql: admissible actions need the server's SQL keyword lists "
                f"(information_schema.KEYWORDS and SQL_FUNCTIONS, MariaDB >= 10.6): {_error_text(err)}"
            ) from None

    def server_functions(self) -> set[str]:
        """The server's SQL functions that are no keyword (COUNT, FROM_DAYS; not LEFT or YEAR): words that
        stand only before "(" (MariaDB's information_schema.SQL_FUNCTIONS minus KEYWORDS)."""
        query = (
            "SELECT FUNCTION FROM information_schema.SQL_FUNCTIONS "
            "WHERE FUNCTION NOT IN (SELECT WORD FROM information_schema.KEYWORDS)"
        )
        return {word for (word,) in self._admin_rows(query)}

    def schema_names(self, db: str) -> dict[str, set[str]]:
        """{table name: its column names} of database `db`."""
        query = "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
        tables: dict[str, set[str]] = {}
        for table, column in self._admin_rows(query, (db,)):
            tables.setdefault(table, set()).add(column)
        return tables

    def _admin_rows(self, query: str, args: tuple = ()) -> list[tuple]:
        try:
            with self._admin().cursor() as cursor:
                cursor.execute(query, args)
                return list(cursor.fetchall())
        except pymysql.MySQLError as err:
            self._drop_admin()
            if _is_server_failure(err):
                raise ServerUnavailable(f"the SQL server failed on {query!r}: {_error_text(err)}") from None
            raise

    def _drop_admin(self) -> None:
        connection, self._admin_connection = self._admin_connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # a dead socket or an unread result: close the socket itself
                connection._force_close()

    # -- bookkeeping -----------------------------------------------------------------------------------
    def table_checksums(self) -> dict[str, int | None]:
        """CHECKSUM TABLE of every table of the sandboxed databases, by "db.table" (tests use it to show that
        nothing changed: a dropped, added, emptied or updated table shows)."""
        checksums = {}
        with self._admin().cursor() as cursor:
            for db in self.databases:
                cursor.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
                    (db,),
                )
                for (table,) in cursor.fetchall():
                    cursor.execute(f"CHECKSUM TABLE {_quote_identifier(db)}.{_quote_identifier(table)}")
                    checksums[f"{db}.{table}"] = cursor.fetchone()[1]
        return checksums

    def close(self) -> None:
        for db in list(self._agent):
            self._drop(db)
        self._drop_admin()


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


def _is_server_failure(err: BaseException) -> bool:
    """Errors of the server or the link, not of a statement: cannot connect (2002, 2003), too many
    connections (1040), shutting down (1053), gone away or lost (2006, 2013, 2055), out of sync (2014),
    or pymysql's own "closed connection" errors (InterfaceError, code 0)."""
    code = err.args[0] if getattr(err, "args", None) else None
    return isinstance(err, pymysql.err.InterfaceError) or code in (
        0,
        1040,
        1053,
        2002,
        2003,
        2006,
        2013,
        2014,
        2055,
    )


#: sql_mode flags that change where a literal ends, so that the statement check would read text as a
#: literal that the server runs as code (`SELECT 'a\', @x := 1 -- '` assigns under NO_BACKSLASH_ESCAPES)
_LITERAL_MODES = frozenset({"NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "ANSI"})


def _scanned_sql_mode(server_mode: str) -> str | None:
    """The server's sql_mode without the flags the statement check does not model (None: no change).
    MariaDB's and MySQL's defaults hold none of them; an external server might."""
    modes = [mode for mode in server_mode.split(",") if mode]
    kept = [mode for mode in modes if mode.upper() not in _LITERAL_MODES]
    return None if kept == modes else ",".join(kept)


def _bound_reads(connection: Any, deadline: float) -> None:
    """Let the connection's next socket read or write wait at most until `deadline`. pymysql applies
    `_read_timeout` to the socket before each packet it reads, so no read of a step can outlast the step,
    whatever the server does (stream rows slowly, hang)."""
    remaining = max(deadline - time.monotonic(), 0.001)
    connection._read_timeout = connection._write_timeout = remaining


def _row_bytes(row: tuple) -> int:
    """About how many bytes a row holds (strings and bytes by length, other values 8)."""
    return sum(len(value) if isinstance(value, (str, bytes)) else 8 for value in row)
