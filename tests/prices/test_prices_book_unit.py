"""MarketBook: sanity band, ordering, provisional and primed marks, source switches."""

from __future__ import annotations

import pytest

from opex_engine.prices.backpack import BookUpdate, FrameError, MarkUpdate
from opex_engine.prices.book import JumpGuard, MarketBook

pytestmark = pytest.mark.unit

BTC = "BTC_USDC_PERP"


def book(**kw: object) -> MarketBook:
    args = {"band_bps": 1000, "confirm_ms": 1000, "confirm_frames": 3} | kw
    return MarketBook([BTC, "ETH_USDC_PERP"], **args)  # type: ignore[arg-type]


def bu(bid: int, ask: int, u: int | None = None, ts: int = 1) -> BookUpdate:
    return BookUpdate(BTC, bid, ask, ts, u)


def mu(mark: int, index: int | None = None, f: int | None = None, n: int | None = None, ts: int = 1) -> MarkUpdate:
    return MarkUpdate(BTC, mark, index, f, n, ts)


def test_jump_guard_band_and_confirmation() -> None:
    g = JumpGuard(band_bps=1000, confirm_ms=1000, confirm_frames=3)
    assert g.assess(100_000, 0.0) and not g.accept(100_000)
    assert g.assess(110_000, 0.1)  # exactly 10 %: inside
    assert not g.assess(111_000, 0.2)  # beyond: candidate 1
    assert not g.assess(111_500, 0.5)  # candidate 2 (within band of the candidate)
    assert not g.assess(111_200, 1.1)  # 3 frames but only 0.9 s
    assert g.assess(111_100, 1.3)  # 3+ frames over >= 1 s: a real move
    assert g.accept(111_100)  # reports a confirmed jump
    assert g.ref == 111_100
    # a lone spike does not build on an older candidate
    assert not g.assess(200_000, 2.0)
    assert not g.assess(50_000, 3.5)
    assert g.cand == 50_000 and g.cand_frames == 1


def test_book_updates_drop_jumps_and_keep_the_last_good_price() -> None:
    b = book()
    st = b.apply_book(bu(650_000_000, 650_001_000), "backpack", 0.0)
    assert (st.bid, st.ask, st.mark, st.index) == (650_000_000, 650_001_000, 650_000_500, 650_000_500)
    assert st.ready and st.last_good_mono == 0.0 and b.dirty == {BTC}
    b.dirty.clear()
    with pytest.raises(FrameError) as err:
        b.apply_book(bu(800_000_000, 800_001_000), "backpack", 1.0)
    assert (err.value.reason, err.value.field) == ("price_jump", "b")
    assert (st.bid, st.ask, st.last_good_mono) == (650_000_000, 650_001_000, 0.0) and not b.dirty


def test_update_ids_must_not_go_back_within_a_connection() -> None:
    b = book()
    b.apply_book(bu(650_000_000, 650_001_000, u=10), "backpack", 0.0)
    with pytest.raises(FrameError) as err:
        b.apply_book(bu(650_000_000, 650_002_000, u=9), "backpack", 0.1)
    assert (err.value.reason, err.value.field) == ("out_of_order", "u")
    b.apply_book(bu(650_000_000, 650_002_000, u=10), "backpack", 0.1)  # equal: a repeat is harmless
    b.new_connection()
    b.apply_book(bu(650_000_000, 650_003_000, u=1), "backpack", 0.2)  # ids may restart after reconnect
    b.apply_mark(mu(650_000_000, ts=100), "backpack", 0.3)
    with pytest.raises(FrameError):
        b.apply_mark(mu(650_000_100, ts=99), "backpack", 0.4)


def test_mark_replaces_the_provisional_mid_and_keeps_absent_fields() -> None:
    b = book()
    st = b.apply_mark(mu(650_000_000, 650_000_100, f=12_500, n=1_000_000_000_000), "backpack", 0.0)
    assert not st.ready and st.last_good_mono is None  # no book yet: nothing the engine can use
    st = b.apply_book(bu(650_100_000, 650_101_000), "backpack", 0.1)
    assert (st.mark, st.index) == (650_000_000, 650_000_100) and st.ready
    st = b.apply_mark(mu(650_200_000), "backpack", 0.2)  # no i/f/n: previous values stay
    assert (st.mark, st.index, st.funding_rate, st.next_funding_ms) == (650_200_000, 650_000_100, 12_500,
                                                                         1_000_000_000_000)
    with pytest.raises(FrameError) as err:
        b.apply_mark(mu(650_300_000, index=900_000_000), "backpack", 0.3)
    assert err.value.field == "i" and st.mark == 650_200_000  # the whole frame is dropped


def test_primed_mark_from_rest_is_used_until_the_stream_sends_one() -> None:
    b = book()
    b.prime_mark(mu(650_000_000, 650_000_200, f=-5), 0.0)
    b.switch_source()  # the first Backpack frame switches the source: the primed mark survives
    st = b.apply_book(bu(650_100_000, 650_101_000), "backpack", 1.0)
    assert (st.mark, st.index, st.funding_rate) == (650_000_000, 650_000_200, -5)
    b.prime_mark(mu(1), 1.0)  # ignored once a mark is known
    st = b.apply_book(bu(650_100_000, 650_102_000), "backpack", 1.1)
    assert st.mark == 650_000_000
    # a primed mark that got old is not used
    eth = MarketBook(["ETH_USDC_PERP"], 1000, 1000, 3)
    eth.prime_mark(MarkUpdate("ETH_USDC_PERP", 32_000_000, None, None, None, 1), 0.0)
    st = eth.apply_book(BookUpdate("ETH_USDC_PERP", 31_000_000, 31_001_000, 2, None), "backpack", 11.0)
    assert st.mark == 31_000_500  # the mid


def test_switching_source_resets_references() -> None:
    b = book()
    b.apply_full(BTC, 600_000_000, 600_001_000, 600_000_500, 600_000_400, 10, 5, 1, "simulated", 0.0)
    b.switch_source()
    st = b.apply_book(bu(650_000_000, 650_001_000, u=3), "backpack", 1.0)  # +8 %: fine, a new reference
    assert st.mark == 650_000_500 and st.source == "backpack"  # provisional mid until Backpack's mark
    b.apply_book(bu(650_000_000, 650_001_000), "backpack", 1.1)
