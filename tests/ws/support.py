"""Helpers of the WebSocket tests: API Gateway events, processes, price
publishing as the poller does it, and a WebSocket client that collects pushes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis as redis_lib
import websockets

from opex_common.settings import Settings
from tests.helpers import env_for

ROOT = Path(__file__).resolve().parents[2]
BTC, ETH, SOL = "BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP"
MOTO_CALLBACK_URL = "https://abc123defg.execute-api.us-east-1.amazonaws.com/live"


# ---------------------------------------------------------------------- moto's @connections
@dataclass
class MotoApi:
    """moto's management API backend, observed and steered by the test."""

    posts: list[tuple[str, bytes, float]] = field(default_factory=list)  # (id, data, monotonic time)
    deleted: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    failing: dict[str, int] = field(default_factory=dict)  # id -> failures left
    slow: dict[str, float] = field(default_factory=dict)  # id -> seconds per post
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(d) for cid, d, _ in self.posts if cid == connection_id]

    def times(self, connection_id: str) -> list[float]:
        with self.lock:
            return [t for cid, _, t in self.posts if cid == connection_id]


# ---------------------------------------------------------------------- a scripted HTTP server
OK_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-amzn-RequestId: r1\r\n\r\n"
GONE_410 = (b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nx-amzn-ErrorType: GoneException\r\n"
            b"Content-Length: 16\r\n\r\n{\"message\":null}")


class HttpServer:
    """A scripted HTTP/1.1 server on 127.0.0.1 (a thread per connection): reads
    one request at a time and answers with what ``respond(request_bytes,
    connection_index)`` returns (None: close without answering)."""

    def __init__(self, respond: Callable[[bytes, int], bytes | None], tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.tls = tls
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"https://localhost:{self.port}" if tls else f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_after_answer = False  # close each connection after its first answer, without saying so
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                request, buf = head + b"\r\n\r\n" + rest[:length], rest[length:]
                self.requests.append(request)
                answer = self.respond(request, index)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_after_answer:
                    return

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def answer_ok_or_gone(request: bytes, _index: int) -> bytes:
    """200, or 410 GoneException for a post to a connection id starting with "gone"."""
    return GONE_410 if b"/gone" in request.split(b"\r\n", 1)[0] else OK_200


def tls_server(tmp_path: Path) -> tuple[HttpServer, Path]:
    """An HttpServer over TLS (``answer_ok_or_gone``) with a fresh self-signed
    certificate for ``localhost``; returns it and the certificate's path."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    return HttpServer(answer_ok_or_gone, tls=tls), cert


# ---------------------------------------------------------------------- API Gateway events
def _request_context(route: str, event_type: str, connection_id: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    rid = uuid.uuid4().hex[:15] + "="
    return {
        "routeKey": route, "eventType": event_type, "extendedRequestId": rid,
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "messageDirection": "IN", "stage": "live", "connectedAt": now - 1000, "requestTimeEpoch": now,
        "identity": {"sourceIp": "166.90.225.1", "userAgent": "pytest"}, "requestId": rid,
        "domainName": "abc123defg.execute-api.us-east-1.amazonaws.com", "connectionId": connection_id,
        "apiId": "abc123defg", **extra,
    }


def connect_event(connection_id: str, *, cookie: str | None = None, ticket: str | None = None,
                  cookie_header: str = "Cookie") -> dict[str, Any]:
    """A $connect event as API Gateway sends it (powertools tests/events/apiGatewayWebSocketApiConnect.json)."""
    headers = {
        "Host": "abc123defg.execute-api.us-east-1.amazonaws.com",
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Key": "+W5xw47OHh3OTFsWKjGu9Q==",
        "Sec-WebSocket-Version": "13",
        "X-Forwarded-For": "166.90.225.1",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if cookie is not None:
        headers[cookie_header] = cookie
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": _request_context("$connect", "CONNECT", connection_id),
        "isBase64Encoded": False,
    }
    if ticket is not None:
        event["queryStringParameters"] = {"ticket": ticket}
        event["multiValueQueryStringParameters"] = {"ticket": [ticket]}
    return event


def message_event(connection_id: str, body: str | None, *, is_base64: bool = False,
                  route: str = "$default") -> dict[str, Any]:
    """A message event (powertools tests/events/apiGatewayWebSocketApiMessage.json)."""
    event: dict[str, Any] = {
        "requestContext": _request_context(route, "MESSAGE", connection_id, messageId=uuid.uuid4().hex[:15] + "="),
        "isBase64Encoded": is_base64,
    }
    if body is not None:
        event["body"] = body
    return event


def disconnect_event(connection_id: str) -> dict[str, Any]:
    headers = {"Host": "abc123defg.execute-api.us-east-1.amazonaws.com", "x-api-key": "",
               "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": _request_context("$disconnect", "DISCONNECT", connection_id,
                                           disconnectStatusCode=1001, disconnectReason="Going away"),
        "isBase64Encoded": False,
    }


class FakeLambdaContext:
    function_name = "opex-ws"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:opex-ws"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/opex-ws"
    log_stream_name = "2026/11/25/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


# ---------------------------------------------------------------------- processes
class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.subscribers = 1  # processes that subscribe to the live channels (the pusher's partitions)

    def start(self) -> Proc:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_port(self, port: int, timeout: float = 20.0) -> Proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not listening on {port} after {timeout}s: {self.log_tail()}")

    def wait_subscribed(self, client: redis_lib.Redis, channel: str, timeout: float = 20.0) -> Proc:
        """Until the pusher (each of its processes) is subscribed to ``channel``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            if client.pubsub_numsub(channel)[0][1] >= self.subscribers:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not subscribed after {timeout}s: {self.log_tail()}")

    def stop(self, sig: int = 15, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def gateway_process(settings: Settings, port: int, log_dir: Path, **env: str) -> Proc:
    return Proc("ws-gateway", [sys.executable, "-m", "opex_ws.local_gateway", "--host", "127.0.0.1",
                               "--port", str(port)],
                env_for(settings, WS_CALLBACK_URL=f"http://127.0.0.1:{port}", **env), log_dir)


def pusher_process(settings: Settings, port: int, log_dir: Path, **env: str) -> Proc:
    from opex_engine.pusher.config import PusherSettings, push_processes

    proc = Proc("pusher", [sys.executable, "-m", "opex_engine", "pusher"],
                env_for(settings, WS_CALLBACK_URL=f"http://127.0.0.1:{port}", **env), log_dir)
    processes = int(proc.env.get("WS_PUSH_PROCESSES") or 0)
    proc.subscribers = push_processes(PusherSettings(_env_file=None, ws_push_processes=processes))
    return proc


@dataclass
class Live:
    settings: Settings
    port: int
    gateway: Proc
    pusher: Proc | None
    log_dir: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def restart_gateway(self, sig: int = 9) -> None:
        """Kill the gateway (SIGKILL: no $disconnect for anyone) and start a new one on the same port."""
        self.gateway.stop(sig=sig)
        self.gateway = gateway_process(self.settings, self.port, self.log_dir).start().wait_port(self.port)


# ---------------------------------------------------------------------- prices
def price(bid: int, ask: int, mark: int | None = None, ts: int | None = None) -> dict[str, Any]:
    """A price as the poller publishes it (4-decimal ints; funding 0.00125 %, next in an hour)."""
    now = int(time.time() * 1000)
    mark = mark if mark is not None else (bid + ask) // 2
    return {"bid": bid, "ask": ask, "mark": mark, "index": mark, "funding_rate": 12_500,
            "next_funding_ms": now + 3_600_000, "ts": ts if ts is not None else now, "source": "test"}


def publish_prices(settings: Settings, client: redis_lib.Redis, prices: dict[str, dict[str, Any]],
                   to_engine: bool = False) -> None:
    """What the poller does with a batch of prices: the engine's tick (optional),
    the ``prices`` hash, and one message on the live prices channel."""
    pipe = client.pipeline(transaction=False)
    if to_engine:
        for market, p in prices.items():
            tick = {"type": "tick", "market": market, **{k: p[k] for k in (
                "bid", "ask", "mark", "index", "funding_rate", "next_funding_ms", "ts")}}
            for shard in range(settings.engine_shards):
                pipe.xadd(settings.keys.input_stream(shard), {"d": orjson.dumps(tick)})
    pipe.hset(settings.keys.prices(), mapping={m: orjson.dumps(p) for m, p in prices.items()})
    pipe.publish(settings.keys.prices_channel(), orjson.dumps({"type": "prices", "prices": prices}))
    pipe.execute()


# ---------------------------------------------------------------------- a client
class WsClient:
    """A real websockets client that keeps every message it receives, with arrival times."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self._new = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str, *, cookie: str | None = None, **kwargs: Any) -> WsClient:
        headers = {"Cookie": f"jwt={cookie}"} if cookie else None
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=10, **kwargs)
        return cls(ws)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.messages.append((time.monotonic(), orjson.loads(raw)))
                self._new.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m.get("type") == kind]

    async def send(self, msg: dict[str, Any] | str) -> None:
        await self.ws.send(msg if isinstance(msg, str) else orjson.dumps(msg).decode())

    async def wait_for(self, kind: str, pred: Any = None, timeout: float = 10.0,
                       after: int = 0) -> dict[str, Any]:
        """The first message of ``kind`` (index >= ``after``) satisfying ``pred``."""
        deadline = time.monotonic() + timeout
        while True:
            for _, m in self.messages[after:]:
                if m.get("type") == kind and (pred is None or pred(m)):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} message within {timeout}s; got {[m for _, m in self.messages][-5:]}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    async def request(self, msg: dict[str, Any] | str, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        start = len(self.messages)
        await self.send(msg)
        return await self.wait_for(kind, timeout=timeout, after=start)

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await self._reader
