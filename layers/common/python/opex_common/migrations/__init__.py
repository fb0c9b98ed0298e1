"""Forward-only SQL migrations for the Postgres history database.

Files named ``NNNN_description.sql`` in this folder are applied in order, each
in its own transaction, and recorded in ``schema_migrations``. A Postgres
advisory lock makes concurrent starters (several Lambdas, the container, the
tests) apply each file exactly once.

Why not Alembic: we have no ORM models to autogenerate from, and plain SQL
files reviewed as SQL are what an operator wants to read before a deploy.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

_HERE = Path(__file__).parent
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 0x0_5E_C0_DE  # arbitrary, constant advisory lock id


def migration_files() -> list[Path]:
    files = sorted(p for p in _HERE.iterdir() if _NAME.match(p.name))
    versions = [p.name[:4] for p in files]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return files


def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    applied: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for path in migration_files():
                version = path.name[:4]
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, path.name),
                    )
                applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
