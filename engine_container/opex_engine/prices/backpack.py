"""Backpack Exchange public market data: frame parser and WebSocket client.

Protocol (see /work/shared/backpack.md):

- subscribe with ``{"method":"SUBSCRIBE","params":["bookTicker.<S>","markPrice.<S>",...]}``;
- data frames are ``{"stream": "<kind>.<symbol>", "data": {...}}``;
- numbers are strings; ``E``/``T`` are microseconds, ``markPrice.n`` milliseconds;
- the server pings (the websockets library answers) and closes on shutdown.

The parser is pure (no I/O) and turns one frame into a :class:`BookUpdate` or
:class:`MarkUpdate` with integer prices, or raises :class:`FrameError` naming
the reason and the field. Stateful checks (sanity band, ordering) live in
:mod:`.book` and the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from opex_common.logs import RateLimitedLog
from opex_common.markets import MarketSpec
from opex_common.units import (
    FUNDING_SCALE,
    QTY_DECIMALS,
    UnitError,
    funding_rate_from_text,
    price_from_text,
    to_units_rounded,
)

from .config import PollerConfig

log = logging.getLogger("opex.prices.backpack")

BOOK_TICKER = "bookTicker"
MARK_PRICE = "markPrice"
# Same ceiling as the engine: $1e9 per unit is a typo or an attack.
MAX_PRICE = 10**13
# |funding rate| per interval above 10% is garbage (the engine's hard limit is 100%).
MAX_FUNDING_RATE = FUNDING_SCALE // 10
_US_MIN = 10**14  # timestamps >= this are microseconds (year 1973+ in µs)
_MS_MIN = 10**11  # ... >= this are milliseconds (year 1973+ in ms)
_TS_MAX = 10**17  # µs in year ~5100: anything above is garbage
_YIELD_EVERY = 32  # frames handled between two yields to the event loop


class FrameError(Exception):
    """A frame was refused. ``reason`` is a short counter name, ``field`` the key at fault."""

    def __init__(self, reason: str, field: str = "", detail: str = "") -> None:
        super().__init__(f"{reason} ({field})" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """Best bid/ask, rounded outward to the market's tick (bid down, ask up)."""

    market: str
    bid: int  # 1e-4 USD
    ask: int
    ts_ms: int  # source event time
    update_id: int | None = None


@dataclass(frozen=True, slots=True)
class MarkUpdate:
    """Mark/index/funding. Optional fields are None when the frame left them out."""

    market: str
    mark: int  # 1e-4 USD (not tick-rounded)
    index: int | None
    funding_rate: int | None  # 1e-9 per funding interval
    next_funding_ms: int | None
    ts_ms: int


Update = BookUpdate | MarkUpdate


# ------------------------------------------------------------------------------ parsing
def subscribe_frame(symbols: Iterable[str], method: str = "SUBSCRIBE") -> str:
    """Backpack's subscription frame for both streams of each symbol."""
    params = [f"{kind}.{s}" for s in symbols for kind in (BOOK_TICKER, MARK_PRICE)]
    return orjson.dumps({"method": method, "params": params}).decode()


def _price(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if value is None:
        raise FrameError("missing_field", key)
    try:
        units = price_from_text(value, key)
    except (UnitError, ArithmeticError, ValueError):
        raise FrameError("non_numeric", key, repr(value)[:40]) from None
    if units <= 0:
        raise FrameError("non_positive", key, repr(value)[:40])
    if units > MAX_PRICE:
        raise FrameError("out_of_range", key, repr(value)[:40])
    return units


def _quantity(data: Mapping[str, Any], key: str) -> None:
    """Validate an optional quantity (we do not use sizes, but garbage means a bad frame)."""
    value = data.get(key)
    if value is None:
        return
    try:
        qty = to_units_rounded(value, QTY_DECIMALS, key)
    except (UnitError, ArithmeticError, ValueError):
        raise FrameError("non_numeric", key, repr(value)[:40]) from None
    if qty < 0:
        raise FrameError("out_of_range", key, repr(value)[:40])


def _integer(value: Any, key: str) -> int:
    """An integer sent as a JSON integer or as a string of digits (both occur)."""
    if type(value) is int:
        return value
    if type(value) is str and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        return int(value)
    raise FrameError("non_numeric", key, repr(value)[:40])


def _time_ms(value: Any, key: str) -> int:
    """A timestamp in µs (documented) or ms (tolerated), returned in ms."""
    n = _integer(value, key)
    if _US_MIN <= n < _TS_MAX:
        return n // 1000
    if _MS_MIN <= n < _US_MIN:
        return n
    raise FrameError("out_of_range", key, str(n))


def _event_time(data: Mapping[str, Any]) -> int:
    """Source time of the frame: ``E`` (event time), else ``T`` (engine time); both validated."""
    e, t = data.get("E"), data.get("T")
    if e is None and t is None:
        raise FrameError("missing_field", "E")
    t_ms = _time_ms(t, "T") if t is not None else None
    return _time_ms(e, "E") if e is not None else t_ms  # type: ignore[return-value]


def _symbol(data: Mapping[str, Any], kind: str, stream_symbol: str, markets: Mapping[str, MarketSpec]) -> MarketSpec:
    event = data.get("e")
    if event is not None and event != kind:
        raise FrameError("bad_shape", "e", repr(event)[:40])
    s = data.get("s")
    if s is None:
        raise FrameError("missing_field", "s")
    if type(s) is not str:
        raise FrameError("bad_shape", "s")
    spec = markets.get(s)
    if spec is None:
        raise FrameError("unknown_symbol", "s", s[:40])
    if s != stream_symbol:
        raise FrameError("symbol_mismatch", "s", f"{s[:40]} on stream {stream_symbol[:40]}")
    return spec


def parse_book_ticker(data: Mapping[str, Any], stream_symbol: str, markets: Mapping[str, MarketSpec]) -> BookUpdate:
    spec = _symbol(data, BOOK_TICKER, stream_symbol, markets)
    bid = _price(data, "b")
    ask = _price(data, "a")
    if bid > ask:
        raise FrameError("crossed_book", "b", f"bid {bid} > ask {ask}")
    _quantity(data, "B")
    _quantity(data, "A")
    u = data.get("u")
    update_id = _integer(u, "u") if u is not None else None
    ts_ms = _event_time(data)
    tick = spec.tick_size
    bid_t = bid // tick * tick  # round outward: never narrows the spread, never crosses it
    ask_t = -(-ask // tick) * tick
    if bid_t <= 0:
        raise FrameError("non_positive", "b", "below one tick")
    if ask_t > MAX_PRICE:
        raise FrameError("out_of_range", "a")
    return BookUpdate(spec.symbol, bid_t, ask_t, ts_ms, update_id)


def parse_mark_price(data: Mapping[str, Any], stream_symbol: str, markets: Mapping[str, MarketSpec]) -> MarkUpdate:
    spec = _symbol(data, MARK_PRICE, stream_symbol, markets)
    mark = _price(data, "p")
    index = _price(data, "i") if data.get("i") is not None else None
    funding = None
    f = data.get("f")
    if f is not None:
        try:
            funding = funding_rate_from_text(f, "f")
        except (UnitError, ArithmeticError, ValueError):
            raise FrameError("non_numeric", "f", repr(f)[:40]) from None
        if abs(funding) > MAX_FUNDING_RATE:
            raise FrameError("out_of_range", "f", repr(f)[:40])
    n = data.get("n")
    next_funding = _time_ms(n, "n") if n is not None else None
    return MarkUpdate(spec.symbol, mark, index, funding, next_funding, _event_time(data))


def parse_frame(raw: str | bytes, markets: Mapping[str, MarketSpec]) -> Update | None:
    """One WebSocket text frame -> an update, None for a control frame, or FrameError."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError("not_json", "frame", repr(raw[:40])) from None
    if type(msg) is not dict:
        raise FrameError("bad_shape", "frame", type(msg).__name__)
    stream = msg.get("stream")
    if stream is None:
        if msg.get("error") is not None:
            raise FrameError("error_frame", "error", repr(msg["error"])[:200])
        if "result" in msg or "id" in msg:
            return None  # an (undocumented) acknowledgement of our SUBSCRIBE
        raise FrameError("missing_field", "stream")
    if type(stream) is not str:
        raise FrameError("bad_shape", "stream")
    data = msg.get("data")
    if data is None:
        raise FrameError("missing_field", "data")
    if type(data) is not dict:
        raise FrameError("bad_shape", "data")
    kind, _, symbol = stream.partition(".")
    if kind == BOOK_TICKER:
        return parse_book_ticker(data, symbol, markets)
    if kind == MARK_PRICE:
        return parse_mark_price(data, symbol, markets)
    raise FrameError("unknown_stream", "stream", stream[:64])


def parse_mark_prices_rest(body: Any, markets: Mapping[str, MarketSpec], now_ms: int) -> list[MarkUpdate]:
    """``GET /api/v1/markPrices`` -> mark updates (entries that fail validation are skipped)."""
    if not isinstance(body, list):
        raise FrameError("bad_shape", "markPrices", type(body).__name__)
    out: list[MarkUpdate] = []
    for item in body:
        if not isinstance(item, dict):
            continue
        sym = item.get("symbol")
        if not isinstance(sym, str) or sym not in markets:
            continue
        try:
            data = {"s": sym, "p": item.get("markPrice"), "i": item.get("indexPrice"),
                    "f": item.get("fundingRate"), "n": item.get("nextFundingTimestamp"), "E": now_ms}
            out.append(parse_mark_price(data, sym, markets))
        except FrameError as exc:
            log.warning("markPrices entry refused", extra={"market": sym, "reason": exc.reason, "field": exc.field})
    return out


def mid_price(bid: int, ask: int) -> int:
    """Mid price in price units, rounded down (deterministic, integer-only)."""
    return (bid + ask) // 2


def decimal_text(units: int, decimals: int = 4) -> str:
    """Integer units as Backpack-style decimal text (for fakes and logs)."""
    return format(Decimal(units).scaleb(-decimals), "f")


# ------------------------------------------------------------------------------ client
class BackpackClient:
    """Keeps one WebSocket to Backpack open: subscribe, read, reconnect with backoff.

    Each text frame is handed to ``on_message`` synchronously (parsing is the
    caller's). Pings from the server are answered by the websockets library; we
    also ping (``ping_interval_s``) and reconnect when the socket goes silent for
    ``silence_timeout_s`` (markPrice arrives about once a second, so silence
    means a dead connection).
    """

    def __init__(
        self,
        url: str,
        symbols: Iterable[str],
        on_message: Callable[[str | bytes], None],
        config: PollerConfig,
        *,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.symbols = list(symbols)
        self.on_message = on_message
        self.config = config
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self._rng = rng or random.Random()
        self._warn = RateLimitedLog(log, config.warn_interval_s)
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        self.failed_attempts = 0
        self.last_error = ""
        self.last_frame_mono = 0.0
        self.frames = 0

    def backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": uniform in [cap/2, cap]."""
        cfg = self.config
        cap = min(cfg.reconnect_max_s, cfg.reconnect_min_s * 2 ** min(attempt, 30))
        return cap / 2 + self._rng.uniform(0.0, cap / 2)

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "failed_attempts": self.failed_attempts,
            "last_error": self.last_error,
            "frames": self.frames,
        }

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            got_frames = await self._session(stop)
            if stop.is_set():
                break
            attempt = 0 if got_frames else attempt + 1
            delay = self.backoff_delay(attempt)
            self._warn.warning(
                "reconnect", "Backpack connection lost; reconnecting",
                url=self.url, error=self.last_error, retry_in_s=round(delay, 3), attempt=attempt,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, stop: asyncio.Event) -> bool:
        """One connection's life. Returns True if it delivered at least one frame."""
        got_frames = False
        cfg = self.config
        try:
            async with connect(
                self.url,
                open_timeout=cfg.connect_timeout_s,
                ping_interval=cfg.ping_interval_s,
                ping_timeout=cfg.ping_timeout_s,
                close_timeout=2,
                max_size=2**20,
            ) as ws:
                await ws.send(subscribe_frame(self.symbols))
                self.connected = True
                self.connects += 1
                self.last_frame_mono = time.monotonic()
                log.info("Backpack connected and subscribed",
                         extra={"url": self.url, "markets": self.symbols, "connects": self.connects})
                if self.on_connect is not None:
                    self.on_connect()
                watchdog = asyncio.create_task(self._watch(ws, stop))
                try:
                    async for message in ws:
                        self.last_frame_mono = time.monotonic()
                        self.frames += 1
                        got_frames = True
                        self.on_message(message)
                        if not self.frames % _YIELD_EVERY:
                            # One TCP read can queue thousands of frames, which the loop
                            # above would consume without suspending: let the flush run.
                            await asyncio.sleep(0)
                finally:
                    watchdog.cancel()
                self.last_error = _close_text(ws)
        except ConnectionClosed as exc:
            self.last_error = f"closed: {exc}"
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
        except Exception as exc:  # a bug must not kill the feed: log it, reconnect
            self.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
            log.exception("Backpack session failed unexpectedly", extra={"url": self.url})
        finally:
            if self.connected:
                self.connected = False
                self.disconnects += 1
                if self.on_disconnect is not None:
                    self.on_disconnect()
            elif not got_frames:
                self.failed_attempts += 1
        return got_frames

    async def _watch(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        """Close the socket on stop, or when it has been silent too long."""
        silence = self.config.silence_timeout_s
        while True:
            remaining = self.last_frame_mono + silence - time.monotonic()
            if remaining <= 0:
                self._warn.warning("silent", "Backpack socket silent; reconnecting",
                                   url=self.url, silent_s=silence)
                await ws.close(code=1001, reason="silent")
                return
            try:
                await asyncio.wait_for(stop.wait(), remaining)
            except TimeoutError:
                continue
            await ws.close()
            return


def _close_text(ws: ClientConnection) -> str:
    code = ws.close_code
    if code is not None:
        return f"closed: {code} {ws.close_reason or ''}".strip()[:300]
    return "closed"
