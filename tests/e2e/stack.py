"""The whole local stack for browser tests and the frontend benchmark.

``E2EStack`` runs ``python -m opex_engine stack`` (what ``make run`` runs) as a
subprocess on free ports, isolated from anything else on the machine:

- its own ``KEY_PREFIX`` (Redis keys are deleted at the end),
- its own Postgres database (created and migrated here, dropped at the end),
- its own Mongo-wire server (nx-27017 in a temporary directory, given to the
  stack as ``MONGO_URL``, so the stack never touches ``.local/mongo`` that a
  concurrent ``make run`` uses); ``MONGO_URL`` from the environment wins,
- its own JWT secret (so ``.local/jwt_secret`` is not read or created),
- a price feed the caller controls: the fake Backpack server
  (``tests/fakes/backpack.py``) with ``PRICE_SOURCE=backpack``, driven by a
  scripted path (``ScriptedFeed``): every market oscillates gently around a
  level the caller can move (``set_level``), so prices visibly move and a
  forced liquidation is exactly as deterministic as the level it is moved to.
  It also serves 1m klines for the candle backfill, so the chart has history.

The browser reaches the WebSocket gateway through a TCP proxy (``WS_PUBLIC_URL``
points at it): ``cut_ws()`` resets every browser socket and refuses new ones,
exactly what a crashed gateway looks like from the browser, and
``restore_ws()`` brings it back. (Killing the gateway child itself would stop
the whole stack: ``opex_engine stack`` shuts everything down when a child exits.)
The pusher talks to the gateway directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for _p in ("layers/common/python", "engine_container", "functions", "."):
    if str(ROOT / _p) not in sys.path:
        sys.path.insert(0, str(ROOT / _p))

import psycopg  # noqa: E402
import redis as redis_lib  # noqa: E402

from opex_common.keys import Keys  # noqa: E402
from opex_common.migrations import migrate  # noqa: E402
from tests.fakes.backpack import FakeBackpack, kline  # noqa: E402
from tests.fakes.tcp_proxy import TcpProxy  # noqa: E402
from tests.helpers import free_port  # noqa: E402

BTC, ETH, SOL = "BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("layers/common/python", "engine_container", "functions", "."))

# Chromium as the brief for these machines says: Debian's package, no Playwright download.
CHROMIUM = os.environ.get("OPEX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch_chromium(playwright: Any, **kwargs: Any) -> Any:
    """Debian's chromium under Playwright (``scripts/ensure-chromium.sh`` installs it)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, **kwargs)


# ---------------------------------------------------------------------------- price feed
# (level, tick decimals, half spread) per market
MARKETS: dict[str, tuple[float, int, float]] = {
    BTC: (65_000.0, 1, 0.5),
    ETH: (3_200.0, 2, 0.05),
    SOL: (150.0, 2, 0.01),
}
AMPLITUDE = 0.0008  # +-0.08 % around the level
PERIOD_S = 24.0
STEP_S = 0.2


def _fmt(price: float, decimals: int) -> str:
    return f"{price:.{decimals}f}"


def history_klines(symbol: str, level: float, decimals: int, minutes: int, seed: int = 7) -> list[dict[str, Any]]:
    """``minutes`` 1m klines that random-walk backwards from ``level`` (the last closes at it)."""
    rnd = random.Random(f"{seed}:{symbol}")
    now_min = int(time.time()) // 60 * 60
    closes = [level]
    for _ in range(minutes - 1):
        closes.append(closes[-1] * (1 + rnd.gauss(0, 0.0012)))
    closes.reverse()  # oldest first, the newest at the level
    out = []
    prev = closes[0] * (1 + rnd.gauss(0, 0.0008))
    for i, close in enumerate(closes):
        start = now_min - (minutes - i) * 60
        o = prev
        hi = max(o, close) * (1 + abs(rnd.gauss(0, 0.0006)))
        lo = min(o, close) * (1 - abs(rnd.gauss(0, 0.0006)))
        out.append(kline(start, _fmt(o, decimals), _fmt(hi, decimals), _fmt(lo, decimals), _fmt(close, decimals),
                         volume="12.5", trades="40"))
        prev = close
    return out


class ScriptedFeed:
    """The fake Backpack server plus the price path it plays, on an event loop of its own thread.

    Every ``STEP_S`` each market sends a bookTicker and a markPrice frame with
    mid = level x (1 + AMPLITUDE x sin(2 pi t / PERIOD_S + phase)); bid/ask are
    the mid -+ a half spread, on the market's tick; the mark is the mid.
    """

    def __init__(self, backfill_minutes: int = 150) -> None:
        self.levels = {s: m[0] for s, m in MARKETS.items()}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="e2e-feed", daemon=True)
        klines = {s: history_klines(s, lvl, MARKETS[s][1], backfill_minutes) for s, lvl in self.levels.items()}
        self.fake = FakeBackpack(klines=klines)
        self.ws_proxy: TcpProxy | None = None
        self._driver: concurrent.futures.Future[None] | None = None
        self._t0 = time.monotonic()
        self.last: dict[str, dict[str, str]] = {}

    # ---- thread plumbing
    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> ScriptedFeed:
        self._thread.start()
        self.run(self.fake.start())
        self._driver = asyncio.run_coroutine_threadsafe(self._drive(), self._loop)
        return self

    def start_ws_proxy(self, target_port: int) -> int:
        async def go() -> int:
            self.ws_proxy = await TcpProxy("127.0.0.1", target_port).start()
            return self.ws_proxy.port
        return int(self.run(go()))

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._driver is not None:
            self._loop.call_soon_threadsafe(self._driver.cancel)
        with contextlib.suppress(Exception):
            if self.ws_proxy is not None:
                self.run(self.ws_proxy.stop(), 10)
        with contextlib.suppress(Exception):
            self.run(self.fake.stop(), 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # ---- the path
    def set_level(self, symbol: str, level: float) -> None:
        """Move a market's level: from the next step on, prices oscillate around it."""
        with self._lock:
            self.levels[symbol] = level

    def mid(self, symbol: str, t: float) -> float:
        with self._lock:
            level = self.levels[symbol]
        phase = {BTC: 0.0, ETH: 2.1, SOL: 4.2}.get(symbol, 0.0)
        return level * (1 + AMPLITUDE * math.sin(2 * math.pi * t / PERIOD_S + phase))

    async def _drive(self) -> None:
        while True:
            t = time.monotonic() - self._t0
            for symbol, (_lvl, decimals, half_spread) in MARKETS.items():
                mid = self.mid(symbol, t)
                bid, ask, mark = _fmt(mid - half_spread, decimals), _fmt(mid + half_spread, decimals), \
                    _fmt(mid, decimals)
                self.last[symbol] = {"bid": bid, "ask": ask, "mark": mark}
                try:
                    await self.fake.emit_book(symbol, bid, ask)
                    await self.fake.emit_mark(symbol, mark, mark)
                except Exception:  # a client vanishing mid-send must not stop the path
                    pass
            await asyncio.sleep(STEP_S)

    # ---- the browser's WebSocket path
    def cut_ws(self) -> None:
        assert self.ws_proxy is not None
        self.run(self.ws_proxy.cut())

    def restore_ws(self) -> None:
        assert self.ws_proxy is not None
        self.run(self.ws_proxy.restore())


# ---------------------------------------------------------------------------- the stack
def create_database() -> str:
    """A migrated database of its own (like tests/conftest.py's fresh_pg_dsn)."""
    name = f"opex_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    migrate(dsn)
    return dsn


def drop_database(dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class E2EStack:
    """``python -m opex_engine stack`` on free ports, with everything of its own (see the module doc)."""

    def __init__(self, log_dir: Path | None = None, dist: Path | None = None,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="opex-e2e-"))
        self.dist = dist or Path(os.environ.get("OPEX_E2E_DIST", ROOT / "frontend" / "dist"))
        self.extra_env = dict(extra_env or {})
        self.key_prefix = f"opex-e2e-{uuid.uuid4().hex[:8]}"
        self.keys = Keys(self.key_prefix)
        self.api_port = free_port()
        self.ws_port = free_port()
        self.feed = ScriptedFeed()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dsn: str | None = None
        self._mongo: Any = None
        self._log: Any = None
        self.log_path = self.log_dir / "stack.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def url(self, route: str = "/") -> str:
        """The SPA at a hash route: ``url("/trade/BTC_USDC_PERP")``."""
        return f"{self.base_url}/#{route}"

    def redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(REDIS_URL)

    # ---- lifecycle
    def start(self, timeout: float = 90.0) -> E2EStack:
        if not (self.dist / "index.html").exists():
            raise RuntimeError(f"no SPA build at {self.dist}: run `npm run build` in frontend/ first")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.feed.start()
        ws_proxy_port = self.feed.start_ws_proxy(self.ws_port)
        self.dsn = create_database()
        mongo_url = os.environ.get("MONGO_URL", "")
        if not mongo_url:
            from opex_engine.localstack import start_mongo_wire

            self._mongo = start_mongo_wire(self.log_dir / "mongo")
            mongo_url = self._mongo.url
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": PYTHONPATH,
            "ENVIRONMENT": "local",
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": self.dsn,
            "MONGO_URL": mongo_url,
            "MONGO_DB": f"opex_{self.key_prefix.replace('-', '_')}",
            "KEY_PREFIX": self.key_prefix,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "PRICE_SOURCE": "backpack",
            "BACKPACK_WS_URL": self.feed.fake.ws_url,
            "BACKPACK_REST_URL": self.feed.fake.rest_url,
            "POLLER_BACKFILL_MINUTES": "150",
            "WS_CALLBACK_URL": f"http://127.0.0.1:{self.ws_port}",
            "WS_PUBLIC_URL": f"ws://127.0.0.1:{ws_proxy_port}",
            "FRONTEND_DIST": str(self.dist),
            "API_WORKERS": "1",
            "SIGNUP_RATE_PER_MIN": "1000",
            "SIGNIN_RATE_PER_MIN": "1000",
        })
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opex_engine", "stack", "--api-port", str(self.api_port),
             "--ws-port", str(self.ws_port)],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """API answers, the engine is ready, prices of every market are in Redis, the pusher listens."""
        deadline = time.monotonic() + timeout
        r = self.redis()
        checks = {
            "api": self._api_up,
            "engine": lambda: b'"ready"' in (r.get(self.keys.engine_status(0)) or b""),
            "prices": lambda: r.hlen(self.keys.prices()) >= len(MARKETS),
            "pusher": lambda: any(n for _, n in r.pubsub_numsub(self.keys.prices_channel())),
            "ws gateway": lambda: self._port_open(self.ws_port),
        }
        pending = dict(checks)
        try:
            while pending:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"the stack exited with {self.proc.returncode}:\n{self.log_tail()}")
                for name, check in list(pending.items()):
                    with contextlib.suppress(Exception):
                        if check():
                            del pending[name]
                if not pending:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the stack was not ready in {timeout:.0f}s (waiting for "
                                       f"{', '.join(pending)}):\n{self.log_tail()}")
                time.sleep(0.1)
        finally:
            r.close()

    def _api_up(self) -> bool:
        with urllib.request.urlopen(f"{self.base_url}/api/v1/config", timeout=2) as resp:
            return bool(resp.status == 200)

    @staticmethod
    def _port_open(port: int) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the stack's own process group
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.feed.stop()
        if self._mongo is not None:
            self._mongo.stop()
            self._mongo = None
        if self.dsn is not None:
            with contextlib.suppress(Exception):
                drop_database(self.dsn)
            self.dsn = None
        with contextlib.suppress(Exception):
            r = self.redis()
            for key in r.scan_iter(match=f"{self.key_prefix}:*", count=1000):
                r.delete(key)
            r.close()

    def __enter__(self) -> E2EStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

