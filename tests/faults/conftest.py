"""Fixtures of the fault tests (built on tests/conftest.py).

The invariant checker reads the whole ledger table, so every fault test gets a
Postgres database of its own (``fresh_pg_dsn``), as tests/engine/test_checker.py does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opex_common.settings import Settings
from tests.faults.support import Proc, history_writer


@pytest.fixture
def settings(settings: Settings, fresh_pg_dsn: str) -> Settings:
    return settings.model_copy(update={"database_url": fresh_pg_dsn})


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; stopped (SIGTERM, then SIGKILL) at the end whatever happens."""
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture
def start_history(procs: list[Proc], tmp_path: Path):  # type: ignore[no-untyped-def]
    def start(settings: Settings) -> Proc:
        proc = history_writer(settings, tmp_path).start()
        procs.append(proc)
        return proc

    return start
