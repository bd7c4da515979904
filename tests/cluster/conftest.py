"""Several machines on one: a Prefect server, a moto S3 server, a Dask scheduler and two workers.

One harness per session, started only when a test in ``tests/cluster`` asks for it. Every piece
is a separate process (its own process group, killed whole at the end) and each Dask worker runs
in its own empty folder with its own ``PREFECT_HOME``, so nothing is shared between "machines"
but what the README tells a user to share: the Prefect API, the bucket, the scheduler and the
QuantCDN (here: emulator) endpoint with its credentials.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import TEST_ORG, TEST_TOKEN
from tests.s3 import ACCESS_KEY, BUCKET, SECRET_KEY, boto_client, free_port, start_moto_process

BIN = Path(sys.executable).parent
START_TIMEOUT = 120  # a Prefect server takes 10-20 s on 2 busy cores; CI can be slower
WORKER_THREADS = 4


@dataclass
class Proc:
    """A started command: its process (the leader of its own process group) and its log."""

    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group: a worker's nanny and the worker process it forked."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@dataclass
class Cluster:
    prefect_api_url: str
    s3_endpoint: str
    scheduler: str
    base_env: dict[str, str]
    root: Path
    procs: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)

    def node_env(self, home: Path) -> dict[str, str]:
        """The environment of another machine whose private folders live under ``home``."""
        return _node_env(home, **self.base_env)

    def start_worker(self, i: int) -> Proc:
        """``dask worker`` number ``i`` (0-based), in an empty working folder of its own."""
        name = f"machine-{i + 1}"
        home = self.root / name  # no shared working directory: a relative path would land here
        home.mkdir(exist_ok=True)
        private = self.root / f"{name}-private"
        proc = _start(
            f"dask-worker-{i + 1}",
            [str(BIN / "dask"), "worker", self.scheduler, "--name", name, "--nworkers", "1"]
            + ["--nthreads", str(WORKER_THREADS), "--no-dashboard", "--death-timeout", "60"]
            + ["--local-directory", str(private / "dask")],
            cwd=home,
            env=self.node_env(private),
            logs=self.root / "logs",
        )
        self.procs.append(proc)
        if i < len(self.workers):
            self.workers[i] = proc
        else:
            self.workers.append(proc)
        return proc

    def live_workers(self) -> int:
        from distributed import Client

        with Client(self.scheduler, timeout=10) as c:
            return len(c.scheduler_info()["workers"])

    def wait_for_workers(self) -> None:
        """Restart the workers an earlier test killed; return once all of them are registered."""
        for i, w in enumerate(list(self.workers)):
            if not w.alive():
                _stop(w)
                self.start_worker(i)
        _wait(f"{len(self.workers)} Dask workers", lambda: self.live_workers() == len(self.workers), self.workers)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.procs)


def _node_env(home: Path, **extra: str) -> dict[str, str]:
    """A machine's environment: its own Prefect home and cache under ``home``, nothing of the test process's
    AWS/PREFECT/QUANT settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        XDG_CACHE_HOME=str(home / "cache"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


def _start(name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], logs: Path) -> Proc:
    log = logs / f"{name}.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(name, popen, log)


def _stop(proc: Proc) -> None:
    """SIGTERM to the group, SIGKILL what is left after a grace period; reap the leader."""
    proc.kill_group(signal.SIGTERM)
    try:
        proc.popen.wait(15)
    except subprocess.TimeoutExpired:
        pass
    proc.kill_group(signal.SIGKILL)  # children that outlived their leader too
    proc.popen.wait(10)


def _wait(what: str, ready, procs: list[Proc], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode} while waiting for {what}:\n{p.tail()}")
        try:
            if ready():
                return
        except Exception:  # not up yet: connection refused, 503, no workers registered
            pass
        time.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {what}:\n" + "\n".join(p.tail() for p in procs))


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
        return resp.status == 200


@pytest.fixture(scope="package")
def cluster_session(emulator_server, tmp_path_factory) -> Iterator[Cluster]:
    """Prefect server + moto + Dask scheduler + two Dask workers, each worker in its own empty folder.

    One per test run, stopped when the tests of this folder are done (not at the end of the whole
    session: five idle servers would slow every later test on two cores)."""
    root = tmp_path_factory.mktemp("cluster")
    logs = root / "logs"
    logs.mkdir()
    procs: list[Proc] = []
    with ExitStack() as stack:
        stack.callback(lambda: [_stop(p) for p in reversed(procs)])

        port = free_port()
        server_home = root / "prefect-server"
        server_home.mkdir()
        server = _start(
            "prefect-server",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
            + ["--no-ui", "--no-scheduler", "--no-late-runs"],
            cwd=server_home,
            env=_node_env(server_home),
            logs=logs,
        )
        procs.append(server)
        api_url = f"http://127.0.0.1:{port}/api"

        s3 = stack.enter_context(start_moto_process())
        boto_client(s3).create_bucket(Bucket=BUCKET)

        sched_port = free_port()
        sched_dir = root / "scheduler"
        sched_dir.mkdir()
        scheduler = _start(
            "dask-scheduler",
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(sched_port), "--no-dashboard"],
            cwd=sched_dir,
            env=_node_env(sched_dir),
            logs=logs,
        )
        procs.append(scheduler)
        address = f"tcp://127.0.0.1:{sched_port}"

        base_env = {
            "PREFECT_API_URL": api_url,
            "QUANT_API_KEY": TEST_TOKEN,
            "QUANT_ORGANIZATION": TEST_ORG,
            "QUANT_BASE_URL": emulator_server.base_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": s3,
        }
        c = Cluster(api_url, s3, address, base_env, root, procs)
        for i in range(2):
            c.start_worker(i)
        _wait("the Prefect server", lambda: _healthy(api_url), [server])
        c.wait_for_workers()
        yield c


@pytest.fixture
def cluster(cluster_session: Cluster) -> Cluster:
    """The session's cluster with both workers up (a test before may have killed one)."""
    cluster_session.wait_for_workers()
    return cluster_session
