"""The Backpack frame parser: every documented variant accepted, every bad field named."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from opex_common.markets import DEFAULT_MARKETS
from opex_engine.prices.backpack import (
    BackpackClient,
    BookUpdate,
    FrameError,
    MarkUpdate,
    parse_frame,
    parse_mark_prices_rest,
    subscribe_frame,
)
from opex_engine.prices.candles import KlineError, kline_time_s, parse_kline, parse_klines
from opex_engine.prices.config import PollerConfig

pytestmark = pytest.mark.unit

SOL_BOOK: dict[str, Any] = {"stream": "bookTicker.SOL_USDC_PERP", "data": {
    "e": "bookTicker", "E": 1788367430247487, "s": "SOL_USDC_PERP", "a": "98.97", "A": "22.39", "b": "98.96",
    "B": "288.77", "u": 4330360995, "T": 1788367430246081}}
SOL_MARK: dict[str, Any] = {"stream": "markPrice.SOL_USDC_PERP", "data": {
    "e": "markPrice", "E": 1788367430422109, "T": 1788367430421396, "s": "SOL_USDC_PERP", "p": "98.94",
    "f": "0.0000125", "i": "98.94998504", "n": 1788368400000}}


def frame(base: dict[str, Any], **changes: object) -> str:
    f = json.loads(json.dumps(base))
    for k, v in changes.items():
        if v is ...:
            f["data"].pop(k)
        else:
            f["data"][k] = v
    return json.dumps(f)


def parse(raw: str | bytes) -> Any:
    return parse_frame(raw, DEFAULT_MARKETS)


def test_documented_frames_parse_to_integer_units() -> None:
    assert parse(json.dumps(SOL_BOOK)) == BookUpdate("SOL_USDC_PERP", 989600, 989700, 1788367430247, 4330360995)
    assert parse(json.dumps(SOL_MARK).encode()) == MarkUpdate(
        "SOL_USDC_PERP", 989400, 989500, 12500, 1788368400000, 1788367430422)


def test_documented_variants_are_accepted() -> None:
    # u as a string (the docs), E in ms, only T, numbers as JSON numbers, no e
    assert parse(frame(SOL_BOOK, u="4330360995")).update_id == 4330360995
    assert parse(frame(SOL_BOOK, E=1788367430247)).ts_ms == 1788367430247
    assert parse(frame(SOL_BOOK, E=...)).ts_ms == 1788367430246
    assert parse(frame(SOL_BOOK, b=98.96, a=99)).bid == 989600
    assert parse(frame(SOL_BOOK, e=..., A=..., B=..., u=...)) == BookUpdate(
        "SOL_USDC_PERP", 989600, 989700, 1788367430247, None)
    # mark: ~30 decimals of funding, negative, rounded half-even to 1e-9; optional fields absent
    m = parse(frame(SOL_MARK, f="-0.000012345678500000000000000000"))
    assert m.funding_rate == -12346
    assert parse(frame(SOL_MARK, f="0.0000000025")).funding_rate == 2
    m = parse(frame(SOL_MARK, i=..., f=..., n=...))
    assert (m.index, m.funding_rate, m.next_funding_ms) == (None, None, None)
    # an acknowledgement-like frame is not an error
    assert parse('{"id":1,"result":null}') is None


def test_bid_and_ask_are_rounded_outward_to_the_tick() -> None:
    btc: dict[str, Any] = {"stream": "bookTicker.BTC_USDC_PERP", "data": {**SOL_BOOK["data"], "s": "BTC_USDC_PERP",
                                                         "b": "65000.15", "a": "65000.15"}}
    upd = parse(json.dumps(btc))
    assert (upd.bid, upd.ask) == (650001000, 650002000)  # tick 0.1 = 1000
    btc["data"]["b"] = btc["data"]["a"] = "65000.1"
    upd = parse(json.dumps(btc))
    assert (upd.bid, upd.ask) == (650001000, 650001000)  # locked, not crossed


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        ("not json", "not_json", "frame"),
        ("[1,2]", "bad_shape", "frame"),
        ('{"data":{}}', "missing_field", "stream"),
        ('{"stream":"bookTicker.SOL_USDC_PERP"}', "missing_field", "data"),
        ('{"stream":"bookTicker.SOL_USDC_PERP","data":[]}', "bad_shape", "data"),
        ('{"stream":7,"data":{}}', "bad_shape", "stream"),
        ('{"error":{"code":4000,"message":"bad"}}', "error_frame", "error"),
        ('{"stream":"depth.SOL_USDC_PERP","data":{}}', "unknown_stream", "stream"),
        (frame(SOL_BOOK, b=...), "missing_field", "b"),
        (frame(SOL_BOOK, a=None), "missing_field", "a"),
        (frame(SOL_BOOK, s=...), "missing_field", "s"),
        (frame(SOL_BOOK, E=..., T=...), "missing_field", "E"),
        (frame(SOL_BOOK, a="98.9x"), "non_numeric", "a"),
        (frame(SOL_BOOK, b="NaN"), "non_numeric", "b"),
        (frame(SOL_BOOK, b="Infinity"), "non_numeric", "b"),
        (frame(SOL_BOOK, b=True), "non_numeric", "b"),
        (frame(SOL_BOOK, b={"v": 1}), "non_numeric", "b"),
        (frame(SOL_BOOK, b="1e999999999"), "non_numeric", "b"),
        (frame(SOL_BOOK, B="lots"), "non_numeric", "B"),
        (frame(SOL_BOOK, A="-1"), "out_of_range", "A"),
        (frame(SOL_BOOK, u="12a"), "non_numeric", "u"),
        (frame(SOL_BOOK, E="soon"), "non_numeric", "E"),
        (frame(SOL_BOOK, E=12345), "out_of_range", "E"),
        (frame(SOL_BOOK, b="-98.96"), "non_positive", "b"),
        (frame(SOL_BOOK, a="0"), "non_positive", "a"),
        (frame(SOL_BOOK, b="0.00001"), "non_positive", "b"),  # rounds to 0
        (frame(SOL_BOOK, b="0.001"), "non_positive", "b"),  # below one tick (0.01)
        (frame(SOL_BOOK, a="2000000000"), "out_of_range", "a"),
        (frame(SOL_BOOK, b="98.98"), "crossed_book", "b"),
        (frame(SOL_BOOK, s="DOGE_USDC_PERP"), "unknown_symbol", "s"),
        (frame(SOL_BOOK, s=5), "bad_shape", "s"),
        (frame(SOL_BOOK, s="BTC_USDC_PERP"), "symbol_mismatch", "s"),
        (frame(SOL_BOOK, e="trade"), "bad_shape", "e"),
        (frame(SOL_MARK, p=...), "missing_field", "p"),
        (frame(SOL_MARK, p="-1"), "non_positive", "p"),
        (frame(SOL_MARK, i="0"), "non_positive", "i"),
        (frame(SOL_MARK, f="zero"), "non_numeric", "f"),
        (frame(SOL_MARK, f="0.5"), "out_of_range", "f"),
        (frame(SOL_MARK, n="next"), "non_numeric", "n"),
    ],
)
def test_bad_frames_name_the_reason_and_field(raw: str, reason: str, field: str) -> None:
    with pytest.raises(FrameError) as err:
        parse(raw)
    assert (err.value.reason, err.value.field) == (reason, field)


def test_unknown_symbol_on_its_own_stream() -> None:
    raw = json.dumps({"stream": "bookTicker.DOGE_USDC_PERP", "data": {**SOL_BOOK["data"], "s": "DOGE_USDC_PERP"}})
    with pytest.raises(FrameError) as err:
        parse(raw)
    assert err.value.reason == "unknown_symbol"


def test_random_garbage_never_escapes_as_another_exception() -> None:
    rng = random.Random(7)
    base = json.dumps(SOL_BOOK)
    for _ in range(3000):
        chars = list(base)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice('{}[]":,0-.9eE ab\\')
        try:
            got = parse("".join(chars))
        except FrameError:
            continue
        if isinstance(got, BookUpdate):
            assert 0 < got.bid <= got.ask


def test_subscribe_frame() -> None:
    assert subscribe_frame(["BTC_USDC_PERP"]) == (
        '{"method":"SUBSCRIBE","params":["bookTicker.BTC_USDC_PERP","markPrice.BTC_USDC_PERP"]}')


def test_rest_mark_prices() -> None:
    body = [
        {"symbol": "BTC_USDC_PERP", "markPrice": "65000.5", "indexPrice": "65001", "fundingRate": "-0.0001",
         "nextFundingTimestamp": 1788368400000},
        {"symbol": "DOGE_USDC_PERP", "markPrice": "1", "indexPrice": "1", "fundingRate": "0",
         "nextFundingTimestamp": 1788368400000},
        {"symbol": "ETH_USDC_PERP", "markPrice": "bad", "indexPrice": "1", "fundingRate": "0",
         "nextFundingTimestamp": 1788368400000},
        "junk",
    ]
    got = parse_mark_prices_rest(body, DEFAULT_MARKETS, 1788367430000)
    assert got == [MarkUpdate("BTC_USDC_PERP", 650005000, 650010000, -100000, 1788368400000, 1788367430000)]
    with pytest.raises(FrameError):
        parse_mark_prices_rest({"not": "a list"}, DEFAULT_MARKETS, 0)


def test_kline_times_in_every_documented_form() -> None:
    t = 1788283380  # 2026-09-01 17:23:00 UTC
    for value in ("2026-09-01 17:23:00", "2026-09-01T17:23:00Z", "2026-09-01T17:23:00+00:00", t, str(t), t * 1000):
        assert kline_time_s(value) == t, value
    for bad in (None, True, "yesterday", 1.5):
        with pytest.raises(KlineError):
            kline_time_s(bad)


def test_kline_rows() -> None:
    k = {"start": "2026-09-01 17:23:00", "end": "2026-09-01 17:24:00", "open": "98.1", "high": "99",
         "low": "97.5", "close": "98.0", "volume": "1", "quoteVolume": "98", "trades": "3"}
    row = parse_kline(k, "SOL_USDC_PERP")
    assert row is not None and tuple(row) == ("SOL_USDC_PERP", 1788283380, 981000, 990000, 975000, 980000, 0,
                                              "backfill")
    assert parse_kline({**k, "open": None, "high": None, "low": None, "close": None}, "SOL_USDC_PERP") is None
    rows, bad = parse_klines([k, {**k, "low": "98.5"}, {**k, "start": "2026-09-01 17:23:30"}, {**k, "high": "x"}, 3],
                             "SOL_USDC_PERP")
    assert len(rows) == 1 and bad == 4


def test_reconnect_backoff_is_exponential_with_jitter_and_capped() -> None:
    cfg = PollerConfig(reconnect_min_s=0.5, reconnect_max_s=30)
    client = BackpackClient("ws://127.0.0.1:1", ["BTC_USDC_PERP"], lambda raw: None, cfg, rng=random.Random(1))
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (50, 30.0)]:
        delays = [client.backoff_delay(attempt) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > cap / 4  # jittered, not a fixed step
