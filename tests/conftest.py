"""Shared fixtures: the test gazetteer, the fixture inbox (tests/data/inbox, written by
tests/data/make_fixtures.py), an HMAC key, and one real ingest run over the whole inbox."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"
TEST_KEY = b"riskwatch-test-key"
INGEST_TIME = dt.datetime(2026, 11, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@pytest.fixture(scope="session")
def gazetteer_path() -> str:
    return str(DATA_DIR / "gazetteer.csv")


@pytest.fixture(scope="session")
def hmac_key() -> bytes:
    return TEST_KEY


@pytest.fixture(scope="session")
def fixture_inbox() -> Path:
    return DATA_DIR / "inbox"


@pytest.fixture()
def write_feed(tmp_path):
    """Write one file into a fresh inbox: ``write_feed("grid/a.csv", bytes_or_text)`` → inbox path."""
    inbox = tmp_path / "inbox"

    def write(relpath: str, content, encoding: str = "utf-8") -> Path:
        path = inbox / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
        return inbox

    return write


@pytest.fixture(scope="session")
def ingest_run(tmp_path_factory, fixture_inbox, gazetteer_path):
    """One real FnApiRunner ingest over every fixture file (a copy, so mtimes are the copy's)."""
    from pipelines.ingest import run_ingest

    root = tmp_path_factory.mktemp("ingest")
    inbox = root / "inbox"
    shutil.copytree(fixture_inbox, inbox)
    out = root / "out"
    result = run_ingest(str(inbox), gazetteer_path, str(out), TEST_KEY, INGEST_TIME)
    return result, out, inbox
