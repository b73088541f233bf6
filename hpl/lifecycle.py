"""Child servers die with their job: on SIGTERM, SIGINT and SIGKILL of the job.

A job that starts a server (the local LLM server, a private MariaDB, a future vLLM) must not leave it
running when the job is stopped. Two mechanisms, because neither covers every way a job ends:

- `exit_on_signals()`: SIGTERM (what Snakemake and Slurm send) and SIGINT (Ctrl-C) become `SystemExit` in
  the job's main thread, so `with` blocks, `finally` clauses and `atexit` handlers run and stop their
  servers cleanly. Python's default for SIGTERM is to die on the spot, running none of them.
- `spawn_server()`: the server is started in a session of its own (its stop() signals the whole group,
  and a Ctrl-C on the terminal reaches only the job, which stops it in order) and, on Linux, with a
  parent-death signal (prctl PR_SET_PDEATHSIG): when the job dies without cleaning up (SIGKILL, an OOM
  kill, a crash in C code), the kernel signals the server.

The parent-death signal fires when the *thread* that forked the server ends, not the process: a server
spawned from a worker thread would be killed when that thread finishes. So it is only requested from the
main thread; elsewhere a warning says that a SIGKILL of the job would orphan the server.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_libc: Any = None
_exiting = False


def _load_libc() -> Any:
    """libc for prctl, loaded in the parent: a child between fork and exec should not load libraries."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def parent_death_preexec(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` asking the kernel to send `sig` to the child when this thread dies (None: no
    such request is possible or safe here, see the module docstring)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        log.warning(
            "a server is started outside the main thread: it is stopped when its job exits normally or "
            "on SIGTERM/SIGINT, but a SIGKILL of the job would leave it running"
        )
        return None
    libc, parent = _load_libc(), os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the job died between fork and prctl: nobody would signal us
            os.kill(os.getpid(), sig)

    return preexec


def spawn_server(
    command: Sequence[str], *, death_signal: int = signal.SIGKILL, **popen_args: Any
) -> subprocess.Popen:
    """Start a server process that dies with this job (its own session + parent-death signal).

    `death_signal` is what the kernel sends when the job dies uncleanly: SIGKILL by default; a server
    that must shut down cleanly to keep its files sound (MariaDB) asks for SIGTERM.
    """
    return subprocess.Popen(
        list(command),
        start_new_session=True,
        preexec_fn=parent_death_preexec(death_signal),
        **popen_args,
    )


def _raise_exit(signum: int, frame: Any) -> None:
    global _exiting
    if _exiting:  # a second signal while cleaning up: let the cleanup finish (SIGKILL still ends us)
        log.warning("signal %d while stopping: already exiting", signum)
        return
    _exiting = True
    log.warning("received signal %d (%s): stopping", signum, signal.Signals(signum).name)
    raise SystemExit(128 + signum)


def exit_on_signals(signals: Sequence[int] = EXIT_SIGNALS) -> bool:
    """Turn `signals` into SystemExit(128 + signal) in the main thread, so context managers stop the
    job's servers. Returns False (and changes nothing) outside the main thread, where Python cannot set
    handlers. A signal the process ignores (SIG_IGN, e.g. SIGINT under nohup) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in signals:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _raise_exit)
    return True
