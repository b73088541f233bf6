"""Servers die with their job: a job holding a live LLM server or MariaDB is killed with SIGTERM, SIGINT or
SIGKILL, and afterwards no process of the server's session remains (hpl.lifecycle).

The job is a real Python process that starts the real server through the library path the pipeline's
scripts take (`to_log` first, as every script does; then `smollm2_server` as the semantic segmenter and
the endpoint policies do, or the InterCode-SQL `env_factory` every SQL job uses), writes the server's pid
and waits to be killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from hpl.mirror import PROJECT_ROOT

JOB = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from types import SimpleNamespace

    sys.path.insert(0, sys.argv[3])
    from hpl.runlog import to_log

    kind, work = sys.argv[1], Path(sys.argv[2])
    to_log(SimpleNamespace(log=[str(work / "job.log")], rule="kill_test"))
    if kind == "llm":
        from hpl.llm_server import smollm2_server

        with smollm2_server(log_path=work / "server.log") as server:
            (work / "server.pid").write_text(str(server.process.pid))
            time.sleep(600)
    else:
        from hpl.benchmarks import BENCHMARKS, env_factory

        make_env = env_factory(BENCHMARKS["intercode_sql"], work / "data", {"max_turns": 1})
        pid_file = next((work / "servers").glob("job-*/mariadbd.pid"))
        (work / "server.pid").write_text(pid_file.read_text().strip())
        time.sleep(600)
    """
)


def _start_job(kind: str, work: Path) -> tuple[subprocess.Popen, int]:
    """The job process and its server's pid, once the server answers."""
    job = subprocess.Popen(
        [sys.executable, "-c", JOB, kind, str(work), str(PROJECT_ROOT)],
        start_new_session=True,
        # SIGINT as Snakemake's job sees it: a test run started in the background (`cmd &` without job
        # control, nohup) would hand the job an ignored SIGINT, which the job rightly keeps ignoring
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    pid_file, deadline = work / "server.pid", time.monotonic() + 300
    while not pid_file.is_file() or not pid_file.read_text():
        if job.poll() is not None or time.monotonic() > deadline:
            job.kill()
            log = (work / "job.log").read_text() if (work / "job.log").exists() else "(no log)"
            pytest.fail(f"the {kind} job did not start its server (exit {job.poll()}):\n{log[-3000:]}")
        time.sleep(0.2)
    return job, int(pid_file.read_text())


def _session(sid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of session `sid`: the server and anything it started."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return members


def _seconds_until_gone(sid: int, started: float, limit: float) -> float | None:
    """Seconds from `started` (the kill) until session `sid` is empty; None if not within `limit`."""
    while time.monotonic() - started < limit:
        if not _session(sid):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def _kill_and_check(kind: str, work: Path, sig: int) -> None:
    job, server_pid = _start_job(kind, work)
    sid = os.getsid(server_pid)
    assert sid == server_pid  # a session of its own: the group signal to the job does not reach it
    assert _session(sid), "the server is not running"
    try:
        killed = time.monotonic()
        os.killpg(job.pid, sig)  # the job's process group, as Snakemake and Slurm signal it
        code = job.wait(timeout=120)
        gone = _seconds_until_gone(sid, killed, limit=60)
        left = [f"{p.pid} {p.name()}" for p in _session(sid)]
    finally:
        for process in _session(sid):  # never leave a server behind, even when the test fails
            process.kill()
    # SIGTERM/SIGINT: a clean exit through the job's with-blocks; SIGKILL: the kernel's death signal
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig), code
    assert gone is not None, f"{kind} server processes still alive 60 s after the kill: {left}"
    print(f"{kind} server gone {gone:.2f} s after the job's {signal.Signals(sig).name}")


SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_llm_server_dies_with_its_job(tmp_path, sig):
    _kill_and_check("llm", tmp_path, sig)


@pytest.mark.skipif(shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is None, reason="needs mariadbd")
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_mariadb_dies_with_its_job(tmp_path, sig, intercode_mirror):
    from hpl.intercode.tasks import DUMP_FILE

    (tmp_path / "data").mkdir()
    shutil.copyfile(intercode_mirror / DUMP_FILE, tmp_path / "data" / DUMP_FILE)
    _kill_and_check("sql", tmp_path, sig)
