"""Shared fixtures: real Redis, a per-run Postgres database, the Mongo-wire
server, and a real engine subprocess.

Isolation: every test gets its own Redis key prefix; every run gets its own
Postgres database (``opex_t_<run>``) and its own Mongo database name, so runs
and tests never collide on the shared services.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib

from opex_common.migrations import migrate
from opex_common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = uuid.uuid4().hex[:8]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PYTHONPATH = os.pathsep.join(
    str(ROOT / p) for p in ("layers/common/python", "engine_container", "functions", ".")
)


# ----------------------------------------------------------------- markers / sockets
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kinds = {"unit", "integration", "e2e"} & {mk.name for mk in item.iter_markers()}
        if not kinds:
            # a test must say what it needs; default to integration when it uses services
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _no_sockets_in_unit_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    import pytest_socket

    pytest_socket.disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        pytest_socket.enable_socket()


# ----------------------------------------------------------------- Postgres
@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A fresh database for this run, migrated; dropped at the end."""
    name = f"opex_t_{RUN_ID}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    migrate(dsn)
    yield dsn
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_dsn() -> Iterator[str]:
    """A migrated database of this test's own, for tests that assert on whole
    tables (candles, the ledger checker), which other tests of the run share."""
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


# ----------------------------------------------------------------- Mongo-wire server
@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MONGO_URL if given, else an nx-27017 server of this run's own."""
    given = os.environ.get("MONGO_URL")
    if given:
        yield given
        return
    from opex_engine.localstack import start_mongo_wire

    data = tmp_path_factory.mktemp("mongo")
    server = start_mongo_wire(data)
    try:
        yield server.url
    finally:
        server.stop()


# ----------------------------------------------------------------- settings / redis
@pytest.fixture
def key_prefix() -> str:
    return f"opex-t{RUN_ID}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def settings(key_prefix: str, pg_dsn: str, mongo_url: str) -> Settings:
    return Settings(
        environment="test",
        redis_url=REDIS_URL,
        database_url=pg_dsn,
        mongo_url=mongo_url,
        mongo_db=f"opex_{RUN_ID}",
        key_prefix=key_prefix,
        engine_shards=1,
        jwt_secret=f"test-secret-{RUN_ID}-0123456789abcdef",
        snapshot_interval_s=1.0,
        price_source="simulated",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a subprocess."""
    env = {k: v for k, v in os.environ.items()}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = PYTHONPATH
    return env


def _delete_prefix(client: redis_lib.Redis, prefix: str) -> None:
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)


@pytest.fixture
def redis(settings: Settings) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        _delete_prefix(client, settings.key_prefix)
        client.close()


# ----------------------------------------------------------------- engine process
class EngineProcess:
    """A real engine shard running as a subprocess (``python -m opex_engine engine``)."""

    def __init__(self, settings: Settings, shard: int = 0, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.shard = shard
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = (log_dir or Path("/tmp")) / f"engine-{settings.key_prefix}-{shard}.log"

    def start(self, wait: bool = True) -> EngineProcess:
        env = settings_env(self.settings)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opex_engine", "engine", "--shard", str(self.shard)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        client = redis_lib.Redis.from_url(self.settings.redis_url)
        key = self.settings.keys.engine_status(self.shard)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"engine exited with {self.proc.returncode}: {self.log_tail()}")
                raw = client.get(key)
                if raw and b'"ready"' in raw and str(self.proc.pid).encode() in raw:
                    return
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"engine not ready in {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = 15, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()

    def kill(self) -> None:
        self.stop(sig=9)


@pytest.fixture
def engine_factory(settings: Settings, redis: redis_lib.Redis, tmp_path: Path) -> Iterator[type]:
    started: list[EngineProcess] = []

    def make(shard: int = 0, settings_override: Settings | None = None) -> EngineProcess:
        proc = EngineProcess(settings_override or settings, shard, tmp_path)
        started.append(proc)
        return proc

    yield make  # type: ignore[misc]
    for proc in started:
        proc.stop()


@pytest.fixture
def engine(engine_factory) -> EngineProcess:  # type: ignore[no-untyped-def]
    """One running engine shard for this test's settings."""
    return engine_factory().start()
