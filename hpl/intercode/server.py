"""The MariaDB server that holds InterCode-SQL's 20 Spider databases.

InterCode runs MySQL in a Docker container. Here the default is a *private* server: an ordinary `mariadbd`
process owned by the job, with its data directory, socket and pid file in one folder, so that it needs
neither root, nor Docker, nor a system service, and dies with the job:

    with PrivateServer("work/intercode_sql/server", dump=".../ic_spider_dbs.sql") as server:
        connection = server.settings.connect()

- First start: `mariadb-install-db` initialises the data directory (about 1.5 s), the server starts (about
  0.2 s) and the dump is loaded once (about 0.5 s); a marker file holding the dump's hash records that.
  Later starts on the same folder reuse the loaded data directory.
- The server listens on a Unix socket only (no TCP) unless a port is given; the folder is private (0700).
- Its lifetime is tied to the job three ways: the context manager stops it (also after an exception);
  SIGTERM (what Snakemake and Slurm send) stops it before the job exits; and on Linux the kernel sends it
  SIGTERM if the job dies without cleaning up (PR_SET_PDEATHSIG), so no orphan server outlives a SIGKILL.
- Table names are case-insensitive (`lower_case_table_names=1`) as on the server InterCode's data was made
  with: Spider's gold queries write `Airports` for the table `airports`. The sql_mode stays MariaDB's
  default; ONLY_FULL_GROUP_BY would break over a hundred gold queries.

`ExternalServer` is the alternative: an existing server (InterCode's Docker container, a site's MariaDB)
reached by host/port/user/password; it loads the dump only when the Spider databases are missing.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pymysql

from hpl.envs.base import BenchmarkError
from hpl.intercode.statements import split_statements
from hpl.lifecycle import spawn_server

#: the databases of ic_spider_dbs.sql (used to tell whether a server already holds the data)
SPIDER_DATABASES = (
    "battle_death",
    "car_1",
    "concert_singer",
    "course_teach",
    "cre_Doc_Template_Mgt",
    "dog_kennels",
    "employee_hire_evaluation",
    "flight_2",
    "museum_visit",
    "network_1",
    "orchestra",
    "pets_1",
    "poker_player",
    "real_estate_properties",
    "singer",
    "student_transcripts_tracking",
    "tvshow",
    "voter_1",
    "world_1",
    "wta_1",
)

_MISSING_SERVER = (
    "{what} not found. Install the Debian package mariadb-server "
    "(apt-get install --no-install-recommends mariadb-server; or conda install -c conda-forge mariadb), "
    "or use an existing server by setting intercode_sql.server.host, intercode_sql.server.port, "
    "intercode_sql.server.user and intercode_sql.server.password (see docs/intercode_sql.md)."
)
_UNIX_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin


class ServerError(BenchmarkError):
    """The SQL server could not be started, reached or loaded (the message says what to do)."""


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach a server: a Unix socket, or host and port; plus the account."""

    user: str = "root"
    password: str = ""
    host: str = "127.0.0.1"
    port: int = 3306
    unix_socket: str | None = None
    connect_timeout: float = 10.0

    def connect(self, **options: Any) -> pymysql.connections.Connection:
        """A new autocommit connection. Never multi-statement: pymysql sends CLIENT_MULTI_STATEMENTS only
        when asked, and nobody asks."""
        params: dict[str, Any] = dict(
            user=self.user,
            password=self.password,
            connect_timeout=self.connect_timeout,
            autocommit=True,
            charset="utf8mb4",
        )
        if self.unix_socket:
            params["unix_socket"] = self.unix_socket
            # no TLS over a local socket: building pymysql's default TLS context costs ~18 ms per connection
            params["ssl_disabled"] = True
        else:
            params.update(host=self.host, port=self.port)
        params.update(options)
        return pymysql.connect(**params)

    def as_user(self, user: str, password: str) -> ConnectionSettings:
        return replace(self, user=user, password=password)


# --- dump loading ------------------------------------------------------------------------------------
class DumpError(ServerError):
    """A statement of the dump failed; the message names its line and its first 200 characters."""


def dump_digest(dump: str | os.PathLike) -> str:
    return hashlib.sha256(Path(dump).read_bytes()).hexdigest()


def load_dump(settings: ConnectionSettings, dump: str | os.PathLike) -> int:
    """Execute every statement of a MySQL dump, one at a time; return how many ran.

    One statement at a time (instead of piping the file into the `mariadb` client) so that a failure names
    the statement and its line, and no client binary is needed for an external server.
    """
    path = Path(dump)
    if not path.is_file():
        raise ServerError(f"SQL dump not found: {path}")
    statements = split_statements(path.read_text(encoding="utf-8"))
    connection = settings.connect()
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                try:
                    cursor.execute(statement.text)
                except pymysql.MySQLError as err:
                    raise DumpError(
                        f"{path}:{statement.line}: loading the SQL dump failed: {_error_text(err)}; "
                        f"statement: {statement.text[:200]!r}"
                    ) from None
    finally:
        connection.close()
    return len(statements)


def _error_text(err: BaseException) -> str:
    args = getattr(err, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return f"({args[0]}) {args[1]}"
    return str(err)


def spider_databases_present(settings: ConnectionSettings) -> bool:
    connection = settings.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW DATABASES")
            present = {row[0].lower() for row in cursor.fetchall()}
    finally:
        connection.close()
    return all(name.lower() in present for name in SPIDER_DATABASES)


# --- an existing server ------------------------------------------------------------------------------
@dataclass
class ExternalServer:
    """A server someone else runs (InterCode's Docker container: host 127.0.0.1, port 3307, admin/admin).

    The account must be able to create the sandbox's read-only accounts (CREATE USER, GRANT OPTION) and,
    when the Spider databases are missing, to load the dump.
    """

    settings: ConnectionSettings
    dump: str | os.PathLike | None = None
    loaded_dump: bool = field(default=False, init=False)

    def start(self) -> ExternalServer:
        try:
            present = spider_databases_present(self.settings)
        except pymysql.MySQLError as err:
            raise ServerError(
                f"cannot reach the SQL server at {self.settings.host}:{self.settings.port} as "
                f"{self.settings.user!r}: {_error_text(err)} (check intercode_sql.server.host/port/user/password)"
            ) from None
        if not present:
            if self.dump is None:
                raise ServerError("the SQL server lacks the Spider databases and no dump was given to load")
            load_dump(self.settings, self.dump)
            self.loaded_dump = True
        return self

    def stop(self) -> None:
        """Nothing to stop: the server is not ours."""

    def revive(self, restart: bool = True) -> bool:
        """After a failure: check that the server answers again (ServerError if not). Someone else runs it:
        it is never restarted here, whatever `restart` says."""
        self.start()
        return False

    def describe(self) -> str:
        """The server, for an error message."""
        return f"the SQL server at {self.settings.host}:{self.settings.port} (user {self.settings.user!r})"

    def __enter__(self) -> ExternalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- a private server --------------------------------------------------------------------------------
def find_program(name: str, configured: str | os.PathLike | None = None) -> str:
    """The path of a MariaDB program: as configured, on PATH, or in /usr/sbin (Debian puts mariadbd there)."""
    if configured:
        if Path(configured).is_file() and os.access(configured, os.X_OK):
            return str(configured)
        raise ServerError(_MISSING_SERVER.format(what=f"{name} (configured as {configured})"))
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if found is None:
        raise ServerError(_MISSING_SERVER.format(what=f"the MariaDB program {name}"))
    return found


class PrivateServer:
    """A `mariadbd` process owned by this job, with everything in `folder` (see the module docstring)."""

    READY_POLL_S = 0.02

    def __init__(
        self,
        folder: str | os.PathLike,
        dump: str | os.PathLike | None = None,
        *,
        port: int | None = None,
        mariadbd: str | os.PathLike | None = None,
        install_db: str | os.PathLike | None = None,
        ready_timeout_s: float = 60.0,
        buffer_pool: str = "128M",
    ) -> None:
        self.folder = Path(folder).resolve()
        self.dump = Path(dump) if dump is not None else None
        self.port = port
        self._mariadbd_setting = mariadbd
        self._install_db_setting = install_db
        self.ready_timeout_s = ready_timeout_s
        self.buffer_pool = buffer_pool
        self.process: subprocess.Popen | None = None
        self.restarts = 0  # how often `revive` started the server again after its process died
        self.loaded_dump = False  # True when this start loaded the dump (False: reused a loaded data dir)
        self.start_seconds: float | None = None
        self._lock_handle: Any = None
        self._socket_dir: str | None = None
        self._previous_sigterm: Any = None

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        return self.folder / "data"

    @property
    def pid_file(self) -> Path:
        return self.folder / "mariadbd.pid"

    @property
    def error_log(self) -> Path:
        return self.folder / "mariadbd.err"

    @property
    def marker(self) -> Path:
        """Written after the dump loaded; holds the dump's sha256 so a changed dump is reloaded."""
        return self.datadir / "hpl-dump-loaded"

    @property
    def socket(self) -> str:
        path = str(self.folder / "mariadbd.sock")
        if len(path) <= _UNIX_SOCKET_PATH_MAX:
            return path
        # a long cluster scratch path does not fit in a socket address: use a short private temp folder
        if self._socket_dir is None:
            self._socket_dir = tempfile.mkdtemp(prefix="hpl-sql-")
        return os.path.join(self._socket_dir, "mariadbd.sock")

    @property
    def settings(self) -> ConnectionSettings:
        """The administrator account (root without password; reachable only through the private socket, or
        127.0.0.1 when a port is configured)."""
        if self.port is None:
            return ConnectionSettings(user="root", unix_socket=self.socket)
        return ConnectionSettings(user="root", host="127.0.0.1", port=self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> PrivateServer:
        if self.running:
            return self
        began = time.perf_counter()
        mariadbd = find_program("mariadbd", self._mariadbd_setting)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self._take_lock()
        try:
            wanted = dump_digest(self.dump) if self.dump is not None else None
            if not self._data_ready(wanted):
                self._initialise_datadir()
            self._launch(mariadbd)
            self._wait_ready()
            if not self._data_ready(wanted):
                self._load(wanted)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - began
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Shut the server down (SIGTERM = MariaDB's clean shutdown; SIGKILL if it hangs) and unlock."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        self._release_lock()

    def revive(self, restart: bool = True, answer_timeout_s: float = 5.0) -> bool:
        """After a failure: start the server again if its process died and `restart` allows it (the data
        directory, loaded and only ever read, is reused: about 0.15 s); True when it was restarted. A live
        process must answer within `answer_timeout_s`; a dying one (its sockets close before it can be
        reaped) is waited for. ServerError naming the server and its log when it does not come back."""
        deadline = time.monotonic() + answer_timeout_s
        while self.running:
            try:
                # a read timeout too: a hung (stopped) server accepts the connection but never greets
                self.settings.connect(connect_timeout=2, read_timeout=2).close()
                return False
            except pymysql.MySQLError as err:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"the SQL server does not answer ({_error_text(err)}); {self.describe()}"
                    ) from None
                time.sleep(self.READY_POLL_S)
        if not restart:
            raise ServerError(f"the SQL server died; {self.describe()}")
        self.stop()  # releases the folder's lock and the socket folder of the dead process
        self.start()
        self.restarts += 1
        return True

    def describe(self) -> str:
        """The server and the end of its log, for an error message."""
        process = self.process
        state = (
            "not running"
            if process is None
            else f"pid {process.pid}, running"
            if process.poll() is None
            else f"pid {process.pid}, exited with code {process.returncode}"
        )
        return (
            f"the private mariadbd in {self.folder} ({state}); its log {self.error_log} ends with:\n"
            f"{self._log_tail()}"
        )

    def __enter__(self) -> PrivateServer:
        self._install_sigterm_handler()
        atexit.register(self.stop)
        try:
            return self.start()
        except BaseException:
            self._restore_sigterm_handler()
            atexit.unregister(self.stop)
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self._restore_sigterm_handler()
            atexit.unregister(self.stop)

    # -- steps ---------------------------------------------------------------------------------------
    def _data_ready(self, wanted_digest: str | None) -> bool:
        if not (self.datadir / "mysql").is_dir():
            return False
        if wanted_digest is None:
            return True
        return self.marker.is_file() and self.marker.read_text().strip() == wanted_digest

    def _initialise_datadir(self) -> None:
        install_db = find_program("mariadb-install-db", self._install_db_setting)
        shutil.rmtree(self.datadir, ignore_errors=True)
        command = [
            install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            # a private tmpdir: a server starting in another job deletes the `#sql*` files it finds in its
            # tmpdir, which broke a bootstrap running beside it in the shared /tmp
            f"--tmpdir={os.path.dirname(self.socket)}",
            "--auth-root-authentication-method=normal",  # root without password: the socket is private
            "--skip-test-db",
            "--lower-case-table-names=1",
            *self._user_option(),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerError(
                f"mariadb-install-db failed (exit {result.returncode}) for {self.datadir}:\n"
                f"{(result.stderr or result.stdout)[-2000:]}"
            )

    @staticmethod
    def _user_option() -> list[str]:
        """MariaDB refuses to run as root unless told to; as anyone else no option is needed."""
        return ["--user=root"] if os.geteuid() == 0 else []

    def _server_command(self, mariadbd: str) -> list[str]:
        network = (
            ["--skip-networking"]
            if self.port is None
            else [f"--port={self.port}", "--bind-address=127.0.0.1"]
        )
        return [
            mariadbd,
            "--no-defaults",  # never read /etc/mysql: the job's server must not depend on the machine's
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--tmpdir={os.path.dirname(self.socket)}",  # private, as in _initialise_datadir
            f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            *network,
            "--lower-case-table-names=1",
            "--skip-name-resolve",
            "--skip-log-bin",
            f"--innodb-buffer-pool-size={self.buffer_pool}",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500",
            *self._user_option(),
        ]

    def _launch(self, mariadbd: str) -> None:
        # its own session (a Ctrl-C reaches the job, which stops us cleanly); if the job dies uncleanly the
        # kernel sends SIGTERM, MariaDB's clean shutdown, so a reused data directory stays sound
        self.process = spawn_server(
            self._server_command(mariadbd),
            death_signal=signal.SIGTERM,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(
                    f"mariadbd exited with code {self.process.returncode} while starting; "
                    f"its log {self.error_log} ends with:\n{self._log_tail()}"
                )
            try:
                self.settings.connect(connect_timeout=2).close()
                return
            except pymysql.MySQLError as err:
                last_error = err
                time.sleep(self.READY_POLL_S)
        raise ServerError(
            f"mariadbd did not accept connections within {self.ready_timeout_s:.0f} s ({last_error}); "
            f"log {self.error_log}:\n{self._log_tail()}"
        )

    def _load(self, digest: str | None) -> None:
        assert self.dump is not None and digest is not None
        self.marker.unlink(missing_ok=True)
        load_dump(self.settings, self.dump)
        self.marker.write_text(digest + "\n")
        self.loaded_dump = True

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- one server per folder -----------------------------------------------------------------------
    def _take_lock(self) -> None:
        """Two servers on one data directory would corrupt it: the folder is locked while we run."""
        if self._lock_handle is not None:
            return
        handle = open(self.folder / "lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ServerError(
                f"another process runs a server in {self.folder}; give each job its own "
                "intercode_sql.server.folder, or connect to that server with intercode_sql.server.host"
            ) from None
        self._lock_handle = handle

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    # -- SIGTERM -------------------------------------------------------------------------------------
    def _install_sigterm_handler(self) -> None:
        """Stop the server on SIGTERM, then let the previous handler (or the default: exit) run."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; PDEATHSIG still covers us
        previous = signal.getsignal(signal.SIGTERM)
        if previous == signal.SIG_IGN:
            return  # the job chose to ignore SIGTERM: so does its server

        def on_sigterm(signum: int, frame: Any) -> None:
            self.stop()
            self._restore_sigterm_handler()
            if callable(previous):
                previous(signum, frame)
            else:
                raise SystemExit(128 + signum)

        self._previous_sigterm = previous
        signal.signal(signal.SIGTERM, on_sigterm)

    def _restore_sigterm_handler(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self._previous_sigterm = None


def make_server(
    dump: str | os.PathLike | None,
    *,
    folder: str | os.PathLike | None = None,
    host: str | None = None,
    port: int | None = None,
    user: str = "admin",
    password: str = "admin",
    mariadbd: str | os.PathLike | None = None,
) -> PrivateServer | ExternalServer:
    """The server the `intercode_sql.server` settings describe: an existing one when `host` is set, else a
    private one in `folder` (a fresh temporary folder when none is given)."""
    if host:
        settings = ConnectionSettings(user=user, password=password, host=host, port=port or 3306)
        return ExternalServer(settings, dump)
    if folder is None:
        folder = tempfile.mkdtemp(prefix="hpl-intercode-sql-")
    return PrivateServer(folder, dump, port=port, mariadbd=mariadbd)
