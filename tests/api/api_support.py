"""Helpers for the API and history tests: processes, a price feed, a TCP proxy
that can cut a dependency off, and API Gateway v2 events."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis as redis_lib

from opex_common.settings import Settings
from tests.helpers import env_for, free_port

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"

BTC, ETH, SOL = "BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP"
# bid, ask, mark (4-decimal ints) the tests trade at
PRICES = {
    BTC: (970_000_000, 970_010_000, 970_005_000),  # $97,000.00 / $97,001.00
    ETH: (35_000_000, 35_001_000, 35_000_500),  # $3,500.00 / $3,500.10
    SOL: (2_000_000, 2_000_100, 2_000_050),  # $200.00 / $200.01
}


# ---------------------------------------------------------------------- prices
class PriceFeed:
    """Plays the price poller: every ``interval`` seconds, a tick to every
    engine shard's input stream and the latest prices in the ``prices`` hash.
    Prices stay where the test puts them (``set``)."""

    def __init__(self, settings: Settings, interval: float = 1.0) -> None:
        self.settings = settings
        self.interval = interval
        self.prices = dict(PRICES)
        self.funding_rate = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._redis = redis_lib.Redis.from_url(settings.redis_url)
        self._lock = threading.Lock()

    def start(self) -> PriceFeed:
        self.publish()
        self._thread.start()
        return self

    def set(self, market: str, bid: int, ask: int, mark: int | None = None) -> None:
        with self._lock:
            self.prices[market] = (bid, ask, mark if mark is not None else (bid + ask) // 2)
        self.publish()

    def publish(self) -> None:
        now = int(time.time() * 1000)
        keys = self.settings.keys
        with self._lock:
            prices = dict(self.prices)
        pipe = self._redis.pipeline(transaction=False)
        for market, (bid, ask, mark) in prices.items():
            tick = {"type": "tick", "market": market, "bid": bid, "ask": ask, "mark": mark, "index": mark,
                    "funding_rate": self.funding_rate, "next_funding_ms": (now // 3_600_000 + 1) * 3_600_000}
            for shard in range(self.settings.engine_shards):
                pipe.xadd(keys.input_stream(shard), {"d": orjson.dumps(tick)})
            pipe.hset(keys.prices(), market, orjson.dumps({**tick, "ts": now, "source": "test"}))
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(redis_lib.RedisError):
                self.publish()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._redis.close()


# ---------------------------------------------------------------------- processes
class Process:
    """A subprocess with its output in a log file, stopped with SIGTERM."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class LiveServer(Process):
    """The API under uvicorn, as the local stack runs it (``python -m opex_api.serve``)."""

    def __init__(self, settings: Settings, log_dir: Path, workers: int = 1, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "opex_api.serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", "--workers", str(workers)]
        super().__init__(argv, env_for(settings, **env), log_dir / f"api-{self.port}.log")

    def start(self, timeout: float = 30.0) -> LiveServer:
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"uvicorn exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{API}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not start: {self.log_tail()}")


def history_writer_process(settings: Settings, log_dir: Path, **env: str) -> Process:
    """``python -m opex_engine history``, the container's history writer."""
    return Process([sys.executable, "-m", "opex_engine", "history"], env_for(settings, **env),
                   log_dir / f"history-{uuid.uuid4().hex[:6]}.log")


# ---------------------------------------------------------------------- outages
class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of Redis or Postgres. ``cut()`` closes
    every connection and refuses new ones (the service "goes down");
    ``restore()`` brings it back. Runs its own event loop in a thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.up = True

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def _cut() -> None:
            self.up = False
            for w in list(self._writers):
                w.close()
            self._writers.clear()

        self._loop.call_soon_threadsafe(_cut)
        time.sleep(0.1)

    def restore(self) -> None:
        self.up = True

    def stop(self) -> None:
        self.cut()

        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@contextlib.contextmanager
def proxied(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


# ---------------------------------------------------------------------- users
async def signup_and_signin(client: httpx.AsyncClient, email: str | None = None,
                            password: str = "correct horse battery") -> dict[str, Any]:
    """A new user, signed in on ``client`` (its cookie jar holds the jwt)."""
    email = email or f"u{uuid.uuid4().hex[:10]}@example.com"
    r = await client.post(f"{API}/user/signup", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    r = await client.post(f"{API}/user/signin", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"email": email, "password": password, **r.json()["user"]}


def open_body(market: str = BTC, side: str = "long", quantity: float = 0.01, leverage: int = 10,
              slippage: int = 100, **extra: Any) -> dict[str, Any]:
    bid, ask, _ = PRICES[market]
    return {"asset": market, "type": side, "quantity": quantity, "leverage": leverage, "slippage": slippage,
            "openPrice": ask if side == "long" else bid, "decimal": 4, **extra}


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------- Lambda events
def http_api_event(method: str, path: str, *, body: Any = None, cookies: list[str] | None = None,
                   headers: dict[str, str] | None = None, query: str = "", source_ip: str = "203.0.113.7",
                   request_id: str | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as Lambda receives it."""
    raw = orjson.dumps(body).decode() if body is not None else None
    hdrs = {"host": "api.example.com", "user-agent": "pytest", **({"content-type": "application/json"} if raw else {}),
            **(headers or {})}
    if raw is not None:
        hdrs["content-length"] = str(len(raw.encode()))
    rid = request_id or f"req-{uuid.uuid4().hex[:12]}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": "pytest"},
            "requestId": rid,
            "routeKey": "$default",
            "stage": "$default",
            "time": "25/Nov/2026:09:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if raw is not None:
        event["body"] = raw
    return event


class FakeLambdaContext:
    function_name = "opex-api"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:opex-api"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/opex-api"
    log_stream_name = "2026/11/25/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
