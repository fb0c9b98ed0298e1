"""A fake Backpack Exchange for tests and benchmarks, speaking the real protocol.

WebSocket (``ws_url``): accepts ``{"method":"SUBSCRIBE"|"UNSUBSCRIBE","params":[...]}``
(extra keys such as ``id`` tolerated; anything else gets an ``error`` frame),
sends ``{"stream":..., "data":{...}}`` frames exactly as Backpack does (numbers as
strings, ``E``/``T`` in microseconds, ``markPrice.n`` in milliseconds) only to
clients subscribed to the stream, pings every ``ping_interval`` seconds and drops
clients that do not pong within ``pong_timeout``. It records every frame clients
send, can refuse new connections (HTTP 503, like an exchange in maintenance),
and can drop clients (abrupt TCP abort, or a Close frame like a server shutdown).

REST (``rest_url``): ``GET /api/v1/klines`` and ``GET /api/v1/markPrices`` with
Backpack's parameters, shapes and ``{code, message}`` errors.

Run alone for manual testing:  python -m tests.fakes.backpack --port 8765 --rest-port 8766
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

DEFAULT_SYMBOLS = ("BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP")
KLINE_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1month")


def now_us() -> int:
    return time.time_ns() // 1000


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def book_ticker_frame(symbol: str, bid: str, ask: str, *, ts_us: int | None = None, u: int | str = 1,
                      bid_qty: str = "1.5", ask_qty: str = "2.25") -> str:
    """A ``bookTicker`` frame, keys in Backpack's order."""
    e = ts_us if ts_us is not None else now_us()
    data = {"e": "bookTicker", "E": e, "s": symbol, "a": ask, "A": ask_qty, "b": bid, "B": bid_qty,
            "u": u, "T": e - 1406}
    return _dumps({"stream": f"bookTicker.{symbol}", "data": data})


def next_funding_ms(now_ms: int | None = None, interval_ms: int = 3_600_000) -> int:
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    return (now_ms // interval_ms + 1) * interval_ms


def mark_price_frame(symbol: str, mark: str, index: str, funding: str = "0.0000125", *,
                     ts_us: int | None = None, next_funding: int | None = None) -> str:
    """A ``markPrice`` frame, keys in Backpack's order."""
    e = ts_us if ts_us is not None else now_us()
    n = next_funding if next_funding is not None else next_funding_ms(e // 1000)
    data = {"e": "markPrice", "E": e, "T": e - 713, "s": symbol, "p": mark, "f": funding, "i": index, "n": n}
    return _dumps({"stream": f"markPrice.{symbol}", "data": data})


def kline(start_s: int, o: str | None, h: str | None, lo: str | None, c: str | None,
          volume: str = "0", trades: str = "0") -> dict[str, Any]:
    """One 1m kline as Backpack's REST returns it (times as "YYYY-MM-DD HH:MM:SS" UTC)."""
    def fmt(s: int) -> str:
        return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return {"start": fmt(start_s), "end": fmt(start_s + 60), "open": o, "high": h, "low": lo, "close": c,
            "volume": volume, "quoteVolume": volume, "trades": trades}


@dataclass
class Step:
    """One step of a scripted price path: a bookTicker and/or a markPrice frame."""

    symbol: str
    bid: str | None = None
    ask: str | None = None
    mark: str | None = None
    index: str | None = None
    funding: str = "0.0000125"
    ts_us: int | None = None


def raw_text_frame(payload: bytes) -> bytes:
    """An unmasked WebSocket text frame (server -> client), for the flood writer."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


class FakeBackpack:
    def __init__(
        self,
        *,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        host: str = "127.0.0.1",
        ping_interval: float | None = 60.0,
        pong_timeout: float = 120.0,
        klines: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.symbols = tuple(symbols)
        self.host = host
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.klines: dict[str, list[dict[str, Any]]] = klines or {}
        self.available = True
        # recordings
        self.received: list[str] = []
        self.subscriptions: dict[ServerConnection, set[str]] = {}
        self.total_connections = 0
        self.refused_connections = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self.dropped_for_pong = 0
        self.frames_sent = 0
        self.kline_requests: list[dict[str, str]] = []
        self.mark_price_requests = 0
        self._update_ids: dict[str, int] = {}
        self._marks: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._ws_server: Server | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ws_port = 0
        self.rest_port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    async def start(self, ws_port: int = 0, rest_port: int = 0) -> FakeBackpack:
        self._ws_server = await serve(
            self._handler, self.host, ws_port, process_request=self._process_request,
            ping_interval=None, compression=None, max_queue=None,
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/api/v1/klines", self._rest_klines)
        app.router.add_get("/api/v1/markPrices", self._rest_mark_prices)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, rest_port)
        await site.start()
        server: Any = site._server
        self.rest_port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._ws_server is not None:
            self._ws_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws_server.wait_closed(), 3)
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeBackpack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ WebSocket side
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path not in ("/", ""):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if not self.available:
            self.refused_connections += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "maintenance\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self.subscriptions[ws] = set()
        self.total_connections += 1
        pinger = asyncio.create_task(self._pinger(ws)) if self.ping_interval else None
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self.received.append(text)
                await self._on_client_message(ws, text)
        except ConnectionClosed:
            pass
        finally:
            if pinger is not None:
                pinger.cancel()
            self.subscriptions.pop(ws, None)
            await self._notify()

    async def _on_client_message(self, ws: ServerConnection, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            await ws.send(_dumps({"error": {"code": 4000, "message": "Invalid JSON"}}))
            return
        method = msg.get("method") if isinstance(msg, dict) else None
        params = msg.get("params") if isinstance(msg, dict) else None
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list) \
                or not all(isinstance(p, str) for p in params):
            await ws.send(_dumps({"id": msg.get("id") if isinstance(msg, dict) else None,
                                  "error": {"code": 4000, "message": "Invalid method or params"}}))
            return
        subs = self.subscriptions.setdefault(ws, set())
        if method == "SUBSCRIBE":
            subs.update(params)
        else:
            subs.difference_update(params)
        await self._notify()

    async def _pinger(self, ws: ServerConnection) -> None:
        assert self.ping_interval
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                waiter = await ws.ping()
                self.pings_sent += 1
                await asyncio.wait_for(waiter, self.pong_timeout)
                self.pongs_received += 1
            except TimeoutError:
                self.dropped_for_pong += 1
                with contextlib.suppress(Exception):
                    await ws.close(1011, "pong timeout")
                return
            except ConnectionClosed:
                return

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_subscribed(self, streams: Iterable[str] | int, timeout: float = 15.0, clients: int = 1) -> None:
        """Wait until ``clients`` connections are subscribed to the streams (or to that many)."""
        def ok() -> bool:
            if isinstance(streams, int):
                good = [s for s in self.subscriptions.values() if len(s) >= streams]
            else:
                want = set(streams)
                good = [s for s in self.subscriptions.values() if want <= s]
            return len(good) >= clients
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(ok), timeout)

    @property
    def clients(self) -> list[ServerConnection]:
        return list(self.subscriptions)

    # ------------------------------------------------------------------ sending
    async def send(self, stream: str, text: str) -> int:
        """Send ``text`` to every client subscribed to ``stream``; returns how many."""
        n = 0
        for ws, subs in list(self.subscriptions.items()):
            if stream in subs:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(text)
                    n += 1
        self.frames_sent += n
        return n

    async def send_raw(self, text: str) -> int:
        """Send ``text`` to every connected client whatever it subscribed to (bad frames)."""
        n = 0
        for ws in list(self.subscriptions):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(text)
                n += 1
        self.frames_sent += n
        return n

    def next_update_id(self, symbol: str) -> int:
        u = self._update_ids.get(symbol, 4_330_360_000) + 1
        self._update_ids[symbol] = u
        return u

    async def emit_book(self, symbol: str, bid: str, ask: str, ts_us: int | None = None) -> int:
        frame = book_ticker_frame(symbol, bid, ask, ts_us=ts_us, u=self.next_update_id(symbol))
        return await self.send(f"bookTicker.{symbol}", frame)

    async def emit_mark(self, symbol: str, mark: str, index: str, funding: str = "0.0000125",
                        ts_us: int | None = None) -> int:
        e = ts_us if ts_us is not None else now_us()
        n = next_funding_ms(e // 1000)
        self._marks[symbol] = {"symbol": symbol, "markPrice": mark, "indexPrice": index,
                               "fundingRate": funding, "nextFundingTimestamp": n}
        return await self.send(f"markPrice.{symbol}", mark_price_frame(symbol, mark, index, funding,
                                                                        ts_us=e, next_funding=n))

    async def play(self, steps: Iterable[Step], interval_s: float = 0.0) -> None:
        """Emit a scripted price path, one step every ``interval_s``."""
        for step in steps:
            if step.bid is not None and step.ask is not None:
                await self.emit_book(step.symbol, step.bid, step.ask, step.ts_us)
            if step.mark is not None:
                await self.emit_mark(step.symbol, step.mark, step.index or step.mark, step.funding, step.ts_us)
            if interval_s:
                await asyncio.sleep(interval_s)

    def set_mark_prices(self, marks: Iterable[dict[str, Any]]) -> None:
        for m in marks:
            self._marks[m["symbol"]] = dict(m)

    async def drop_clients(self, how: str = "abort") -> int:
        """``abort``: reset the TCP connection; ``close``: Close frame 1001 (server going away)."""
        victims = list(self.subscriptions)
        for ws in victims:
            if how == "abort":
                ws.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    await ws.close(1001, "server shutting down")
        return len(victims)

    async def set_available(self, available: bool) -> None:
        """Unavailable: refuse new connections (HTTP 503) and drop the current ones."""
        self.available = available
        if not available:
            await self.drop_clients("close")

    async def flood(self, frames: Iterable[bytes], chunk: int = 256, max_buffer: int = 1 << 20) -> int:
        """Write pre-encoded frames (``raw_text_frame``) to every client as fast as TCP takes them.

        Bypasses the library's send path (one ``transport.write`` per ``chunk``
        frames) so that the fake is not the bottleneck. Do not mix with pings.
        """
        clients = list(self.subscriptions)
        sent = 0
        batch: list[bytes] = []
        for raw in frames:
            batch.append(raw)
            if len(batch) >= chunk:
                sent += await self._write_all(clients, b"".join(batch), len(batch), max_buffer)
                batch.clear()
        if batch:
            sent += await self._write_all(clients, b"".join(batch), len(batch), max_buffer)
        self.frames_sent += sent
        for ws in clients:  # let the client read it all before anyone closes
            while not ws.transport.is_closing() and ws.transport.get_write_buffer_size():
                await asyncio.sleep(0.001)
        return sent

    @staticmethod
    async def _write_all(clients: list[ServerConnection], data: bytes, count: int, max_buffer: int) -> int:
        n = 0
        for ws in clients:
            transport = ws.transport
            if transport.is_closing():
                continue
            while transport.get_write_buffer_size() > max_buffer:
                await asyncio.sleep(0.0002)
                if transport.is_closing():
                    break
            transport.write(data)
            n += count
        await asyncio.sleep(0)
        return n

    # ------------------------------------------------------------------ REST side
    @staticmethod
    def _error(code: str, message: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status)

    async def _rest_klines(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.kline_requests.append(q)
        symbol = q.get("symbol")
        if not symbol or symbol not in self.symbols:
            return self._error("INVALID_SYMBOL", "Invalid symbol")
        if q.get("interval") not in KLINE_INTERVALS:
            return self._error("INVALID_CLIENT_REQUEST", "Invalid interval")
        if "startTime" not in q:
            return self._error("INVALID_CLIENT_REQUEST", "startTime is required")
        if q.get("priceType", "Last") not in ("Last", "Index", "Mark"):
            return self._error("INVALID_CLIENT_REQUEST", "Invalid priceType")
        try:
            start = int(q["startTime"])
            end = int(q["endTime"]) if "endTime" in q else 2**62
        except ValueError:
            return self._error("INVALID_CLIENT_REQUEST", "startTime/endTime must be integers")
        rows = []
        for k in self.klines.get(symbol, []):
            t = int(datetime.strptime(k["start"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
            if start <= t < end:
                rows.append(k)
        return web.json_response(rows)

    async def _rest_mark_prices(self, request: web.Request) -> web.Response:
        self.mark_price_requests += 1
        symbol = request.query.get("symbol")
        if symbol is not None and symbol not in self.symbols:
            return self._error("INVALID_SYMBOL", "Invalid symbol")
        marks = [m for s, m in sorted(self._marks.items()) if symbol in (None, s)]
        return web.json_response(marks)


async def _serve_forever(args: argparse.Namespace) -> None:
    fake = FakeBackpack(ping_interval=args.ping_interval)
    await fake.start(args.port, args.rest_port)
    print(f"fake Backpack: {fake.ws_url}  REST {fake.rest_url}", flush=True)
    prices = {"BTC_USDC_PERP": 65000.0, "ETH_USDC_PERP": 3200.0, "SOL_USDC_PERP": 150.0}
    i = 0
    while True:
        i += 1
        for sym, p in prices.items():
            mid = p * (1 + 0.0005 * ((i % 40) - 20) / 20)
            await fake.emit_book(sym, f"{mid - 0.05:.2f}", f"{mid + 0.05:.2f}")
            if i % 10 == 0:
                await fake.emit_mark(sym, f"{mid:.2f}", f"{mid:.2f}")
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="fake Backpack Exchange (WebSocket + REST)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rest-port", type=int, default=8766)
    parser.add_argument("--ping-interval", type=float, default=60.0)
    asyncio.run(_serve_forever(parser.parse_args()))
