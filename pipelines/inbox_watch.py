"""Which inbox files have landed, and which are done: the embedded stream job's durable progress.

A file has landed when a ``<name>.done`` marker sits next to it, or when it has not been modified
for ``stable_seconds`` (an upload still in progress keeps moving its mtime).
The journal (``<out>/state/stream/journal.json``, rewritten atomically) records a run as pending
before it writes anything and the files as done after all its outputs are in place, so a run
killed half-way is redone on restart with the same files and the same output names.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from pipelines.alert_sinks import write_atomic
from pipelines.ledger import file_sha256
from pipelines.read import FeedFile, discover

DONE_SUFFIX = ".done"


def state_dir(out_dir) -> Path:
    return Path(out_dir) / "state" / "stream"


@dataclasses.dataclass
class Journal:
    path: Path
    done: dict[str, dict]  # relpath → {"sha256", "run_id"}
    pending: dict[str, list[str]]  # run_id → relpaths

    @classmethod
    def open(cls, out_dir) -> "Journal":
        path = state_dir(out_dir) / "journal.json"
        if not path.exists():
            return cls(path, {}, {})
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(path, data["done"], data["pending"])

    def _save(self) -> None:
        data = {"done": self.done, "pending": self.pending}
        write_atomic(self.path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8"))

    def is_done(self, relpath: str, sha256: str) -> bool:
        entry = self.done.get(relpath)
        return entry is not None and entry["sha256"] == sha256

    def begin(self, run_id: str, relpaths: list[str]) -> None:
        self.pending[run_id] = list(relpaths)
        self._save()

    def commit(self, run_id: str, checksums: dict[str, str]) -> None:
        for relpath in self.pending.pop(run_id):
            self.done[relpath] = {"sha256": checksums[relpath], "run_id": run_id}
        self._save()


class LandingDetector:
    """A file has landed when it has a ``.done`` marker or has not been modified for a while."""

    def __init__(self, stable_seconds: float, clock=time.time):
        self.stable_seconds = stable_seconds
        self.clock = clock

    def landed(self, files: list[FeedFile]) -> list[FeedFile]:
        now = self.clock()
        return [f for f in files
                if Path(f.path + DONE_SUFFIX).exists() or now - f.mtime >= self.stable_seconds]


def feed_files(inbox: str) -> list[FeedFile]:
    """Inbox files, without the ``.done`` markers."""
    return [f for f in discover(inbox) if not f.relpath.endswith(DONE_SUFFIX)]


def new_landed_files(inbox: str, journal: Journal, detector: LandingDetector) -> tuple[list[FeedFile], dict[str, str]]:
    """Landed files not yet done (a file re-sent with other content counts as new), with checksums."""
    files, checksums = [], {}
    for f in detector.landed(feed_files(inbox)):
        digest = file_sha256(f.path)
        if not journal.is_done(f.relpath, digest):
            files.append(f)
            checksums[f.relpath] = digest
    return files, checksums
