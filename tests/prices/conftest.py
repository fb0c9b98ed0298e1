"""Fixtures of the price-poller tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from opex_common.migrations import migrate

PG_ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def fresh_pg_dsn() -> Iterator[str]:
    """A migrated database of this test's own: candle tests assert on whole tables,
    which other tests of the run (simulated pollers write candles too) would disturb."""
    name = f"opex_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    try:
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
