"""A real single-node Slurm cluster for tests: Debian's ``slurm-wlm`` and ``munge``, configured in
a temporary folder and started as root (``.ci/run`` installs the packages).

:func:`start_cluster` writes ``slurm.conf`` (no accounting, like many small clusters: ``sacct``
fails there), starts ``munged`` when no munge daemon answers, then ``slurmctld`` and ``slurmd``,
and waits until the node is idle. It returns the environment (``SLURM_CONF``) the Slurm commands
and submitit need, or raises :class:`ClusterUnavailable` with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")


class ClusterUnavailable(RuntimeError):
    """Slurm cannot start here; the message says why."""


@dataclass
class Cluster:
    folder: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True)
        for p in reversed(self.procs):
            p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return cred.returncode == 0 and subprocess.run(
            ["unmunge"], input=cred.stdout, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_munge(folder: Path) -> subprocess.Popen | None:
    if _munge_works():
        return None
    if not Path("/etc/munge/munge.key").exists():
        raise ClusterUnavailable("no /etc/munge/munge.key (install the munge package)")
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    proc = subprocess.Popen(["munged", "--foreground", "--force"],
                            stdout=open(folder / "munged.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not _munge_works():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ClusterUnavailable(f"munged did not start: {(folder / 'munged.log').read_text()}")
        time.sleep(0.3)
    return proc


def _conf(folder: Path, host: str) -> str:
    cpus = os.cpu_count() or 1
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return "\n".join([
        "ClusterName=tmortest",
        f"SlurmctldHost={host}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={folder}/state",
        f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid",
        f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log",
        f"SlurmdLogFile={folder}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2",
        "MpiDefault=none",
        "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/none",  # sacct fails, as on many clusters
        "JobAcctGatherType=jobacct_gather/none",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "KillWait=5",
        f"NodeName={host} CPUs={cpus} RealMemory={max(1024, mem_mb // 2)} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def start_cluster(folder: Path, timeout_s: float = 120.0) -> Cluster:
    """Configure and start a one-node cluster in ``folder``; see the module docstring."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise ClusterUnavailable(f"not installed: {', '.join(missing)} "
                                 "(apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting slurmctld / slurmd here needs root")
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder, host))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(folder, env)
    try:
        munged = _start_munge(folder)
        if munged is not None:
            cluster.procs.append(munged)
        for daemon in (["slurmctld", "-D", "-i", "-f", str(conf)],
                       ["slurmd", "-D", "-f", str(conf), "-N", host]):
            cluster.procs.append(subprocess.Popen(
                daemon, env=env, stdout=open(folder / f"{daemon[0]}.out", "w"),
                stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout_s
        while True:
            dead = [p.args[0] for p in cluster.procs if p.poll() is not None]
            if dead:
                raise ClusterUnavailable(f"{dead[0]} exited: {cluster.log(dead[0])[-1500:]}"
                                         f"{(folder / (dead[0] + '.out')).read_text()[-500:]}")
            state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env,
                                   capture_output=True, text=True, timeout=30)
            if state.returncode == 0 and state.stdout.strip() in ("idle", "mixed"):
                return cluster
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"node not idle after {timeout_s:.0f} s "
                                         f"(sinfo: {state.stdout.strip() or state.stderr.strip()})")
            time.sleep(1.0)
    except BaseException:
        cluster.stop()
        raise
