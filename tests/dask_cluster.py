"""A real dask.distributed cluster on 127.0.0.1 for tests and benchmarks.

One scheduler and N workers, each started with the `dask` command-line tools as separate OS
processes (the way a county's cluster is started), so that everything the DaskRunner ships to the
workers really crosses a process boundary and is pickled. The processes are bounded in time twice
over: the scheduler shuts itself down when idle and workers when the scheduler disappears, and
`DaskCluster.close()` kills their whole process groups. Use it as a context manager, or through the
`dask_cluster` pytest fixture (module scoped: starting a cluster costs several seconds).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: a crashed test run must not leave a cluster behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: close() and the idle/death timeouts still bound the processes


class DaskCluster:
    """A scheduler plus `workers` single-threaded workers, each its own process group."""

    def __init__(self, workers: int = 2, threads_per_worker: int = 1, memory_limit: str = "2GiB",
                 idle_timeout_s: int = 300, start_timeout_s: float = 60.0):
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.idle_timeout_s = idle_timeout_s
        self.start_timeout_s = start_timeout_s
        self.address: str | None = None
        self._processes: list[subprocess.Popen] = []
        self._workdir: str | None = None

    def _spawn(self, args: list[str], log_name: str) -> None:
        env = dict(os.environ)
        # The scheduler and workers unpickle the DoFns: the project must be importable there, as
        # it would be by installing the package on every node of a real cluster; tests/ too,
        # because pytest imports test modules by their bare name (test_x, not tests.test_x).
        paths = (str(PROJECT_ROOT), str(PROJECT_ROOT / "tests"), env.get("PYTHONPATH"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        log = open(Path(self._workdir) / log_name, "wb")
        with log:
            self._processes.append(subprocess.Popen(
                [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self._workdir, start_new_session=True, preexec_fn=_die_with_parent))

    def start(self) -> "DaskCluster":
        self._workdir = tempfile.mkdtemp(prefix="riskwatch-dask-")
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        try:
            self._spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                         "--no-dashboard", "--idle-timeout", f"{self.idle_timeout_s}s"], "scheduler.log")
            for index in range(self.workers):
                self._spawn(["distributed.cli.dask_worker", self.address, "--host", "127.0.0.1",
                             "--name", f"worker-{index}", "--nthreads", str(self.threads_per_worker),
                             "--memory-limit", self.memory_limit, "--no-dashboard",
                             "--death-timeout", "30s", "--local-directory", self._workdir],
                            f"worker-{index}.log")
            self._wait_for_workers()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_for_workers(self) -> None:
        from distributed import Client

        deadline = time.monotonic() + self.start_timeout_s
        with Client(self.address, timeout=self.start_timeout_s) as client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < self.workers:
                dead = [p.args for p in self._processes if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"dask cluster did not start (exited: {dead}):\n{self.logs()}")
                time.sleep(0.2)

    def logs(self) -> str:
        if not self._workdir:
            return ""
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                         for log in sorted(Path(self._workdir).glob("*.log")))

    def scheduler_pid(self) -> int:
        return self._processes[0].pid

    def worker_pids(self) -> list[int]:
        """The worker (nanny) processes started here; each runs its worker in a child process."""
        return [p.pid for p in self._processes[1:]]

    def close(self) -> None:
        for process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            # the nanny's worker child shares the group: make sure none outlives its nanny
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self._processes.clear()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "DaskCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture(scope="module")
def dask_cluster():
    with DaskCluster(workers=2) as cluster:
        yield cluster
