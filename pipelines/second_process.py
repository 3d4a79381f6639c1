"""Part of the report step in a second interpreter, on a core this process leaves idle.

The second process is a fresh interpreter running a module (``python -P -m MODULE RESULT ARGS…``):
not a fork, since the Beam runner leaves threads whose locks a fork would copy mid-use, and not
``multiprocessing``'s spawn, which re-imports the caller's ``__main__`` (every script calling the
report step would need a ``__main__`` guard, and the batch job's would import the pipeline stack
again). The module reads the warehouse itself and hands back its result pickled into the file
``RESULT``. Whoever starts one keeps a way to do the same work in this process: should the second
process fail in any way, the work runs again here, so an error surfaces exactly as it does
without it.

A second process may start before what it reads is written (the batch job starts them with its
first pipeline, so their imports and set-up take the idle core then): it waits to hear
``EVENTS_WRITTEN`` on its standard input (``wait_to_hear``) before it reads the warehouse.
"""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_PROJECT = Path(__file__).resolve().parent.parent
# what a second process waits to hear before it reads the month's Events
EVENTS_WRITTEN = "events written"
# what one that builds the topics waits to hear before it reads the scores
SCORES_WRITTEN = "scores written"
# a second process costs several CPU-seconds more in all (its imports, its reads): it pays only on a
# core that nothing else uses, so it needs this much of one idle besides the core of this process
IDLE_CORE_SHARE = 0.5
# the environment variable naming the pipe a second process writes a line to once its result is written
# (``write_result``): its caller reads the result then, without waiting for the process to exit (freeing a
# heap of texts, models and dictionaries took 1.3-2 s of the report step's wait on a county month)
RESULT_READY_FD = "RISKWATCH_RESULT_READY_FD"


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user … steal (guests are in user)


def idle_cores(seconds: float = 0.25) -> float:
    """Cores that ran nothing during a short look (this process sleeps through it, so its own core
    counts); where /proc/stat is missing, the cores less the 1-minute load average, which lags."""
    cores = os.cpu_count() or 1
    try:
        idle, total = _cpu_times()
        time.sleep(seconds)
        idle_after, total_after = _cpu_times()
    except (OSError, ValueError, IndexError):
        try:
            return cores - os.getloadavg()[0] + 1
        except OSError:
            return 0.0
    return cores * (idle_after - idle) / max(1, total_after - total)


def a_core_to_spare() -> bool:
    """Whether a second process would have a core of its own besides this process's."""
    return len(os.sched_getaffinity(0)) >= 2 and idle_cores() >= 1 + IDLE_CORE_SHARE


class SecondProcess:
    """``python -P -m module RESULT *args`` started at once; ``result()`` waits for its value. Its
    standard input is a pipe this process writes lines to (``tell``); another pipe tells this process
    its result is written (``RESULT_READY_FD``)."""

    def __init__(self, module: str, args: list[str], what: str, python: str = sys.executable):
        self._what = what
        self._folder = tempfile.TemporaryDirectory(prefix="riskwatch-")
        self._result = Path(self._folder.name) / "result.pickle"
        # this project's modules, whatever the working directory holds (-P: it is not on the path)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT), env.get("PYTHONPATH")) if p)
        self._ready, ready = os.pipe()
        env[RESULT_READY_FD] = str(ready)
        self._delivered = False
        try:
            self._process: subprocess.Popen | None = subprocess.Popen(
                [python, "-P", "-m", module, str(self._result), *args], env=env,
                stdin=subprocess.PIPE, pass_fds=(ready,))
        except OSError as e:
            log.warning("no second process for %s (%s): doing it in this one", what, e)
            self._process = None
        finally:
            os.close(ready)  # the child's copy alone: the pipe ends when the child does

    def tell(self, line: str) -> None:
        """A line to the process's standard input. A process that already died hears nothing; its
        ``result`` says so."""
        if self._process and self._process.stdin:
            try:
                self._process.stdin.write(line.encode("utf-8") + b"\n")
                self._process.stdin.flush()
            except OSError:
                pass

    def result(self) -> Any | None:
        """The process's value; None when it failed or never started (logged: the caller does the
        work itself)."""
        try:
            if self._process is None:
                return None
            if self._process.stdin:
                self._process.stdin.close()
            # a line once the result is written; nothing, once the process ended without writing it
            self._delivered = bool(os.read(self._ready, 1))
            code = 0 if self._delivered else self._process.wait()
            if code == 0:
                with open(self._result, "rb") as f:
                    return pickle.load(f)
            log.warning("%s failed in a second process (exit %s): doing it in this one", self._what, code)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
            log.warning("%s from a second process unreadable (%s): doing it in this one", self._what, e)
        finally:
            self.close()
        return None

    def close(self) -> None:
        """Stop the process if it still runs unfinished (the caller failed first) and remove its file. One
        that delivered its result exits on its own."""
        if self._process and not self._delivered and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._ready >= 0:
            os.close(self._ready)
            self._ready = -1
        self._folder.cleanup()


def wait_to_hear(*lines: str) -> str:
    """In a second process: wait until the caller writes one of ``lines``, and return it. Anything
    else, or the pipe closed unheard, means the caller stopped first or does the work itself: exit."""
    heard = sys.stdin.readline().strip()
    if heard not in lines:
        raise SystemExit(f"never told: {' or '.join(lines)}")
    return heard


def write_result(path: str, value: Any) -> None:
    """The second process's value into ``RESULT``, whole or not at all."""
    partial = Path(path).with_suffix(".partial")
    with open(partial, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    partial.replace(path)
    ready = os.environ.get(RESULT_READY_FD)
    if ready:
        os.write(int(ready), b"\n")
