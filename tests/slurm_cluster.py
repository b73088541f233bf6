"""A real single-node SLURM cluster in a temp folder, for tests of the SLURM profile (not a test file).

    with slurm_cluster() as cluster:
        subprocess.run(["sbatch", ...], env=cluster.env)   # SLURM_CONF points at the cluster's slurm.conf
        cluster.sacct(...)

Everything lives in one temp folder: the munge key and socket, a private MariaDB instance (own datadir,
socket and TCP port) for accounting, slurmdbd, slurmctld and slurmd with a fake GPU (`gres gpu:fake:1`,
File=/dev/null), their configs, state and logs. Two partitions on the one node: CPU_PARTITION (the default)
and GPU_PARTITION. Ports are picked free, so it runs beside other clusters on the same machine. Each daemon
runs in the foreground as our own child process, in its own session; on exit every one is stopped
(SIGTERM, then SIGKILL) and the folder is removed. Needs root (the daemons run as root) and Debian's
`munge slurmctld slurmd slurm-client slurmdbd mariadb-server`; `ensure_packages()` installs the missing
ones with apt-get. Measured facts behind the settings: ../../shared/notes/slurm.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client", "slurmdbd", "mariadb-server"]
# the programs that tell whether PACKAGES are installed
BINARIES = [
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "sacct",
    "sacctmgr",
    "slurmdbd",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
]

CLUSTER_NAME = "hpltest"
CPU_PARTITION = "hpl_cpu"  # default partition
GPU_PARTITION = "hpl_gpu"
ACCOUNT = "hpl"
GPU_TYPE = "fake"  # the gres type of the fake GPU: `--gpus=fake:1` schedules on it, as `--gpus=1` does
# The node's declared memory (MB), accepted as configured (SlurmdParameters=config_overrides): jobs ask for
# what the rules ask for on a real cluster (sft 16 GB, 32 GB on a retry) and SLURM schedules them here even
# on a smaller machine; nothing enforces it (no cgroups), and the CI-scale jobs use a few hundred MB.
NODE_MEMORY_MB = 64000


class ClusterError(RuntimeError):
    pass


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def ensure_packages(timeout: int = 300) -> None:
    """Install the Debian packages when a program is missing (root, apt-get; about 30 s)."""
    if not missing_binaries():
        return
    if os.geteuid() != 0:
        raise ClusterError(f"missing {missing_binaries()} and not root: apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=timeout, check=True)
    result = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0 or missing_binaries():
        raise ClusterError(f"apt-get install failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Runs beside the test process: when that dies without stopping the cluster (SIGKILL, a CI timeout), this
# kills every daemon's process group listed in ROOT/pgids and removes ROOT. It ends when ROOT is gone.
# (PR_SET_PDEATHSIG does not survive here: the daemons change credentials, which clears it.)
_WATCHDOG = """
import os, shutil, signal, sys, time
parent, root = int(sys.argv[1]), sys.argv[2]
while os.path.isdir(root):
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        try:
            pgids = [int(line) for line in open(os.path.join(root, "pgids")) if line.strip()]
        except OSError:
            pgids = []
        for pgid in pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(1)
        shutil.rmtree(root, ignore_errors=True)
        break
    time.sleep(1)
"""


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path("/usr/sbin", name).exists() else None)
    if found is None:
        raise ClusterError(f"{name} not found")
    return found


@dataclass
class SlurmCluster:
    root: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    cpu_partition: str = CPU_PARTITION
    gpu_partition: str = GPU_PARTITION
    account: str = ACCOUNT
    gpu_type: str = GPU_TYPE
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    watchdog: subprocess.Popen | None = None

    def __post_init__(self):
        self.etc = self.root / "etc"
        self.logs = self.root / "log"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.db_socket = self.root / "db" / "mysqld.sock"
        self.ports = {name: free_port() for name in ["slurmctld", "slurmd", "slurmdbd", "mariadb"]}
        self.bin = self.root / "bin"
        self.env = {
            **os.environ,
            "SLURM_CONF": str(self.etc / "slurm.conf"),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        # a job submitted from inside a SLURM job would otherwise inherit the outer job's settings
        for key in list(self.env):
            if key.startswith(("SLURM_", "SBATCH_", "SRUN_")) and key != "SLURM_CONF":
                del self.env[key]

    # ---- commands against the cluster -------------------------------------------------------------------
    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def sacct(self, *fields: str, all_steps: bool = False) -> list[dict[str, str]]:
        """Every job of the cluster's accounting, one dict per job (allocation lines only by default)."""
        cmd = [
            "sacct",
            "--allusers",
            "--parsable2",
            "--noheader",
            "--starttime",
            "2000-01-01",
            "--format",
            ",".join(fields),
        ]
        if not all_steps:
            cmd.insert(1, "-X")
        lines = self.run(*cmd).stdout.splitlines()
        return [dict(zip(fields, line.split("|"))) for line in lines if line]

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- configuration ----------------------------------------------------------------------------------
    def write_srun_wrapper(self) -> None:
        """`srun` that finds this cluster, first on the PATH that jobs inherit (sbatch --export=ALL).

        Inside a job, snakemake-executor-plugin-slurm-jobstep starts the rule with `srun` but removes
        every SLURM_* variable except the job's identity from srun's environment, SLURM_CONF included;
        a real cluster's srun then finds /etc/slurm/slurm.conf (or configless DNS), this one would not.
        """
        self.bin.mkdir(parents=True, exist_ok=True)
        wrapper = self.bin / "srun"
        wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={self.etc / "slurm.conf"} exec {_binary("srun")} "$@"\n')
        wrapper.chmod(0o755)

    def write_configs(self) -> None:
        self.write_srun_wrapper()
        for folder in [
            self.etc,
            self.logs,
            self.munge_socket.parent,
            self.root / "state",
            self.root / "spool",
            self.root / "db",
        ]:
            folder.mkdir(parents=True, exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        r = self.root
        (self.etc / "slurm.conf").write_text(f"""\
ClusterName={CLUSTER_NAME}
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self.ports["slurmctld"]}
SlurmdPort={self.ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={self.etc}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerParameters=batch_sched_delay=0
MinJobAge=600
KillWait=5
InactiveLimit=0
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["slurmdbd"]}
AccountingStoragePass={self.munge_socket}
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
AccountingStorageEnforce=associations
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={NODE_MEMORY_MB} \
Gres=gpu:{self.gpu_type}:1 State=UNKNOWN
PartitionName={self.cpu_partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
PartitionName={self.gpu_partition} Nodes={self.host} MaxTime=INFINITE State=UP
""")
        # without File= the node goes INVAL; /dev/null is a device every machine has
        (self.etc / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu Type={self.gpu_type} File=/dev/null\n"
        )
        (self.etc / "plugstack.conf").write_text("")
        dbd = self.etc / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports["slurmdbd"]}
SlurmUser=root
PidFile={r}/slurmdbd.pid
LogFile={self.logs}/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports["mariadb"]}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db_{CLUSTER_NAME}
""")
        dbd.chmod(0o600)  # slurmdbd refuses a config that others can read

    # ---- daemons ----------------------------------------------------------------------------------------
    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.out", "ab")
        proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self.procs[name] = proc
        with open(self.root / "pgids", "a") as pgids:  # for the watchdog
            pgids.write(f"{proc.pid}\n")
        return proc

    def _wait(self, what: str, ready, timeout: float, name: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name and self.procs[name].poll() is not None:
                raise ClusterError(
                    f"{name} exited ({self.procs[name].returncode}) while waiting for {what}:\n"
                    f"{self.diagnostics()}"
                )
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError, ClusterError):
                pass
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout} s waiting for {what}:\n{self.diagnostics()}")

    def _sql(self, statement: str) -> None:
        subprocess.run(
            [_binary("mariadb"), "--no-defaults", f"--socket={self.db_socket}", "-uroot", "-e", statement],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )

    def start(self) -> None:
        self.write_configs()
        self.watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # munge: root-owned key and socket folder in our temp folder (--force: we run it as root)
        self._start(
            "munged",
            [
                _binary("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={self.root}/munge/munge.key",
                f"--pid-file={self.root}/munge/munged.pid",
                f"--seed-file={self.root}/munge/munged.seed",
                f"--log-file={self.logs}/munged.log",
            ],
        )
        self._wait("munged", self.munge_socket.exists, 20, "munged")
        # MariaDB for accounting: a private instance (own datadir, socket, port), small buffers
        datadir = self.root / "db" / "data"
        subprocess.run(
            [
                _binary("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        self._start(
            "mariadb",
            [
                _binary("mariadbd"),
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                f"--socket={self.db_socket}",
                f"--port={self.ports['mariadb']}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.root}/db/mariadb.pid",
                f"--log-error={self.logs}/mariadb.log",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--innodb-lock-wait-timeout=900",
                "--skip-name-resolve",
            ],
        )
        self._wait("mariadb", lambda: self._sql("SELECT 1") is None, 60, "mariadb")
        self._sql(
            "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
            "GRANT ALL ON *.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
        )
        self._start("slurmdbd", [_binary("slurmdbd"), "-D"])
        # slurmdbd reads slurmdbd.conf beside $SLURM_CONF
        self._wait(
            "slurmdbd",
            lambda: self.run("sacctmgr", "-n", "list", "cluster", timeout=10).returncode == 0,
            60,
            "slurmdbd",
        )
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME, check=False)
        self.run(
            "sacctmgr",
            "-i",
            "add",
            "account",
            self.account,
            f"Cluster={CLUSTER_NAME}",
            "Description=hpl tests",
            "Organization=hpl",
        )
        self.run(
            "sacctmgr",
            "-i",
            "add",
            "user",
            "root",
            f"Account={self.account}",
            f"Cluster={CLUSTER_NAME}",
            f"DefaultAccount={self.account}",
        )
        self._start("slurmctld", [_binary("slurmctld"), "-D", "-i", "-f", str(self.etc / "slurm.conf")])
        self._wait("slurmctld", lambda: self.run("sinfo", "-h", timeout=10).returncode == 0, 60, "slurmctld")
        self._start("slurmd", [_binary("slurmd"), "-D", "-f", str(self.etc / "slurm.conf"), "-N", self.host])
        self._wait("an idle node", lambda: self.node_state().startswith("idle"), 90, "slurmd")

    def stop(self) -> None:
        """Cancel what is left and stop every daemon we started, in reverse order; never raises."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run("scancel", "--full", "--user=root", timeout=10, check=False)
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            for sig, wait in [(signal.SIGTERM, 15), (signal.SIGKILL, 10)]:
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)  # the daemon's own session: it and its children
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait)
        self._kill_stepds()
        self.procs.clear()
        (self.root / "pgids").unlink(missing_ok=True)
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait(timeout=10)
            self.watchdog = None

    def _kill_stepds(self) -> None:
        """slurmstepd processes of our jobs leave slurmd's session: find them by our spool folder."""
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (pid_dir / "cmdline").read_bytes()
                environ = (pid_dir / "environ").read_bytes()
                if b"slurmstepd" in cmdline and str(self.etc).encode() in environ:
                    os.kill(int(pid_dir.name), signal.SIGKILL)

    def diagnostics(self) -> str:
        parts = []
        for name in ["slurmctld", "slurmd", "slurmdbd", "munged", "mariadb"]:
            text = self.log(name)[-1500:]
            out = self.logs / f"{name}.out"
            if out.exists():
                text += out.read_text(errors="replace")[-800:]
            if text:
                parts.append(f"--- {name}\n{text}")
        return "\n".join(parts)


@contextlib.contextmanager
def slurm_cluster(base: str | os.PathLike | None = None, install: bool = True) -> Iterator[SlurmCluster]:
    """Start the cluster (about 10 s), yield it, stop every daemon and remove the folder."""
    if install:
        ensure_packages()
    # short path: the munge socket path must stay under the 108-byte limit of a unix socket
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir=base or "/tmp"))
    root.chmod(0o755)  # munged wants the folders above its socket searchable by all
    cluster = SlurmCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python tests/slurm_cluster.py CMD...`: run CMD against a fresh cluster (SLURM_CONF set), then stop it.
    Without CMD: start, print how to reach it, wait for Ctrl-C."""
    argv = sys.argv[1:] if argv is None else argv
    with slurm_cluster() as cluster:
        print(
            f"cluster up: export SLURM_CONF={cluster.env['SLURM_CONF']} PATH={cluster.bin}:$PATH; "
            f"partitions {cluster.cpu_partition} (default), {cluster.gpu_partition}; "
            f"account {cluster.account}; gpu type {cluster.gpu_type}",
            flush=True,
        )
        if argv:
            return subprocess.run(argv, env=cluster.env).returncode
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
