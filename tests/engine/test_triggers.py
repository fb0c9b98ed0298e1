"""The price-level trigger index, alone and as the engine uses it.

TriggerIndex: FALLING levels fire when the price drops to or below them,
RISING ones when it climbs to or above them; a popped key is unwatched; a
re-set replaces the key's levels (the old heap entries are skipped lazily);
compaction rebuilds the heaps without changing what fires.

Engine: the indexed check must decide exactly what a brute-force check of
every trade on every tick decides; each regression below is a case where it
once did not.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opex_common import messages as m
from opex_engine.core.triggers import ALWAYS, FALLING, RISING, TriggerIndex
from tests.engine.kit import BTC, ETH, Kit

pytestmark = pytest.mark.unit


def popped(ix: TriggerIndex, market: str, price: int) -> set[object]:
    out: set[object] = set()
    ix.pop_crossed(market, price, out)
    return out


# ============================================================== TriggerIndex
@pytest.mark.unit
def test_falling_fires_at_or_below_the_level() -> None:
    ix = TriggerIndex()
    ix.set(("iso", "a"), ((BTC, FALLING, 100),))
    assert popped(ix, BTC, 101) == set()
    assert ("iso", "a") in ix
    assert popped(ix, BTC, 100) == {("iso", "a")}
    assert ("iso", "a") not in ix and len(ix) == 0
    assert popped(ix, BTC, 50) == set()  # a popped key is no longer watched


@pytest.mark.unit
def test_rising_fires_at_or_above_the_level() -> None:
    ix = TriggerIndex()
    ix.set(("iso", "a"), ((BTC, RISING, 100),))
    ix.set(("iso", "b"), ((BTC, RISING, 120),))
    assert popped(ix, BTC, 99) == set()
    assert popped(ix, BTC, 110) == {("iso", "a")}
    assert popped(ix, BTC, 500) == {("iso", "b")}


@pytest.mark.unit
def test_levels_are_per_market_and_a_key_may_watch_several() -> None:
    ix = TriggerIndex()
    ix.set(("acct", "u1"), ((BTC, FALLING, 100), (ETH, RISING, 50)))
    assert popped(ix, ETH, 49) == set()
    assert popped(ix, ETH, 100) == {("acct", "u1")}  # pops from every market at once
    assert popped(ix, BTC, 1) == set()


@pytest.mark.unit
def test_always_level_fires_on_any_price() -> None:
    ix = TriggerIndex()
    ix.set(("iso", "k"), ((BTC, FALLING, ALWAYS),))
    assert popped(ix, BTC, 10**13) == {("iso", "k")}


@pytest.mark.unit
def test_remove_is_lazy_but_final() -> None:
    ix = TriggerIndex()
    ix.set(("iso", "a"), ((BTC, FALLING, 100),))
    ix.remove(("iso", "a"))
    ix.remove(("iso", "never-set"))  # harmless
    assert len(ix) == 0
    assert popped(ix, BTC, 0) == set()


@pytest.mark.unit
def test_reset_replaces_old_levels() -> None:
    ix = TriggerIndex()
    ix.set(("iso", "a"), ((BTC, FALLING, 100),))
    ix.set(("iso", "a"), ((BTC, FALLING, 50),))  # moved down: 100 no longer fires
    assert popped(ix, BTC, 80) == set()
    assert popped(ix, BTC, 50) == {("iso", "a")}
    ix.set(("iso", "a"), ((BTC, RISING, 10),))
    ix.set(("iso", "a"), ((ETH, FALLING, 5),))  # moved to another market
    assert popped(ix, BTC, 10**9) == set()
    assert popped(ix, ETH, 5) == {("iso", "a")}


@pytest.mark.unit
def test_set_with_no_levels_unwatches() -> None:
    ix = TriggerIndex()
    ix.set(("iso", "a"), ((BTC, FALLING, 100),))
    ix.set(("iso", "a"), ())
    assert ("iso", "a") not in ix and popped(ix, BTC, 0) == set()


@pytest.mark.unit
def test_a_popped_key_set_again_fires_again() -> None:
    ix = TriggerIndex()
    ix.set(("iso", "a"), ((BTC, FALLING, 100),))
    assert popped(ix, BTC, 90) == {("iso", "a")}
    ix.set(("iso", "a"), ((BTC, FALLING, 100),))
    assert popped(ix, BTC, 90) == {("iso", "a")}


def _model_pop(model: dict[tuple[str, str], tuple[tuple[str, int, int], ...]], market: str, price: int) -> set[str]:
    """What the index must do, written the slow obvious way."""
    hit = {k for k, levels in model.items()
           if any(mk == market and (price <= lv if d == FALLING else price >= lv) for mk, d, lv in levels)}
    for k in hit:
        del model[k]
    return hit


@pytest.mark.unit
def test_compaction_keeps_behaviour_and_bounds_memory() -> None:
    ix = TriggerIndex()
    model: dict[tuple[str, str], tuple[tuple[str, int, int], ...]] = {}
    # re-set a few keys thousands of times: stale heap entries pile up, compaction must run
    for i in range(12_000):
        key = ("iso", f"k{i % 7}")
        levels = ((BTC, FALLING, 1_000 + (i * 37) % 500), (ETH, RISING, 5_000 + (i * 11) % 300))
        ix.set(key, levels)
        model[key] = levels
    assert ix._heap_size <= 4 * len(ix) + 4096 + 2  # compacted along the way
    assert len(ix) == len(model) == 7
    for market, price in ((BTC, 1_200), (ETH, 5_100), (BTC, 1_400), (ETH, 6_000), (BTC, 0)):
        assert popped(ix, market, price) == _model_pop(model, market, price)
    assert len(ix) == 0 == len(model)


@pytest.mark.unit
def test_compaction_preserves_live_levels_exactly() -> None:
    ix = TriggerIndex()
    for i in range(100):
        ix.set(("iso", str(i)), ((BTC, FALLING, i * 10),))
    for i in range(0, 100, 2):
        ix.remove(("iso", str(i)))
    ix._compact()
    assert ix._heap_size == 50
    assert popped(ix, BTC, 505) == {("iso", str(i)) for i in range(51, 100, 2)}
    assert popped(ix, BTC, 0) == {("iso", str(i)) for i in range(1, 51, 2)}


_level = st.tuples(st.sampled_from([BTC, ETH]), st.sampled_from([FALLING, RISING]), st.integers(0, 50))
_ix_op = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 9), st.lists(_level, max_size=3).map(tuple)),
    st.tuples(st.just("remove"), st.integers(0, 9)),
    st.tuples(st.just("pop"), st.sampled_from([BTC, ETH]), st.integers(-5, 55)),
    st.tuples(st.just("compact")),
)


@pytest.mark.unit
@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(st.lists(_ix_op, max_size=80))
def test_index_matches_a_simple_model(ops: list[tuple[object, ...]]) -> None:
    ix = TriggerIndex()
    model: dict[tuple[str, str], tuple[tuple[str, int, int], ...]] = {}
    for o in ops:
        if o[0] == "set":
            key, levels = ("iso", f"k{o[1]}"), o[2]
            ix.set(key, levels)  # type: ignore[arg-type]
            if levels:
                model[key] = levels  # type: ignore[assignment]
            else:
                model.pop(key, None)
        elif o[0] == "remove":
            ix.remove(("iso", f"k{o[1]}"))
            model.pop(("iso", f"k{o[1]}"), None)
        elif o[0] == "pop":
            assert popped(ix, o[1], o[2]) == _model_pop(model, o[1], o[2])  # type: ignore[arg-type]
        else:
            ix._compact()
        assert len(ix) == len(model) and all(k in ix for k in model)


# ============================================================== the engine's use of it
def _both(**kw: object) -> tuple[Kit, Kit]:
    return Kit(**kw), Kit(brute_force=True, **kw)  # type: ignore[arg-type]


def _same(a: Kit, b: Kit) -> None:
    assert m.encode_canonical(a.events) == m.encode_canonical(b.events)
    assert a.snapshot_bytes() == b.snapshot_bytes()
    assert a.invariants() == [] == b.invariants()


@pytest.mark.unit
def test_isolated_open_refreshes_the_cross_accounts_band() -> None:
    """Opening an isolated trade takes IM + fee from the balance, so it lowers
    the cross equity: the account's watched band must shrink with it."""
    a, b = _both(starting_balance=10_000_000)  # $1,000
    for k in (a, b):
        k.tick(BTC, 500_000_000)
        k.tick(ETH, 30_000_000)
        k.account("u1")
        # cross long 0.1 BTC 10x: IM 5_000_000 + fee 25_000 -> balance 4_975_000
        k.open_ok("u1", BTC, "long", 10_000_000, 10)
        # the band then: buffer 9_975_000 - 250_000 - 2 = 9_724_998 over slope 0.0995 per unit
        #   -> watched down to 500_000_000 - 97_738_673 = 402_261_327 (about 40,226)
        # isolated long 1 ETH 10x: IM 3_000_000 + fee 15_000 -> balance 1_960_000
        k.open_ok("u1", ETH, "long", 100_000_000, 10, mode="isolated")
        # now Eq = 1_960_000 + 5_000_000 + (M - 5e8) / 10 <= M / 2000 below about 43,256
        # at 43,200: Eq = 6_960_000 - 6_800_000 = 160_000 <= MM 216_000: liquidated
        k.tick(BTC, 432_000_000)
    assert [c["reason"] for c in b.closes()] == ["liquidation"]  # the rule
    _same(a, b)


@pytest.mark.unit
def test_unhealthy_cross_account_is_liquidated_on_any_markets_tick() -> None:
    """A cross account can be liquidatable right after an open (here: a 4% spread
    at 100x). Brute force liquidates it on the next tick of any market; the
    index must not wait for a tick of the account's own market."""
    a, b = _both(starting_balance=1_200_000)  # $120
    for k in (a, b):
        k.tick(ETH, 30_000_000)
        k.tick(BTC, 490_000_000, 510_000_000, 500_000_000)  # bid 49,000 / ask 51,000
        k.account("u1")
        # long 0.1 BTC at the ask 51,000, 100x: IM 510_000, fee 25_500 -> balance 664_500
        k.open_ok("u1", BTC, "long", 10_000_000, 100)
        # at the mark 50,000: Eq = 664_500 + 510_000 - 1_000_000 = 174_500 <= MM 250_000
        k.tick(ETH, 30_000_000)
    (c,) = b.closes()
    # closed at the mark: 174_500 left, all of it the (capped) liquidation fee
    assert (c["reason"], c["close_price"], c["fee"]) == ("liquidation", 500_000_000, 174_500)
    _same(a, b)


@pytest.mark.unit
def test_isolated_liquidation_island_above_the_trigger_price() -> None:
    """With rounding, IM + u <= MM can hold on a short run of marks above the
    highest mark of the main liquidation range (u floors in steps of 10_000
    price units for 0.0001 BTC while MM ceils in steps of 2_000_000). The index
    must still look at such marks.

    long 0.0001 BTC (10_000) at 50,191.1 10x: IM = ceil(10_000 x 501_911_000 / 1e9)
    = ceil(5_019.11) = 5_020; u = floor((M - 501_911_000) / 10_000); MM = ceil(M / 2e6).
      M = 453_990_999: u = -4_793 -> 227 <= MM 227   (the top of the main range)
      M = 454_000_000: u = -4_792 -> 228 >  MM 227   (safe)
      M = 454_000_500: u = -4_792 -> 228 <= MM ceil(227.00025) = 228   (liquidatable)
    """
    a, b = _both()
    for k in (a, b):
        k.tick(BTC, 501_911_000)
        k.account("u1")
        t = k.open_ok("u1", BTC, "long", 10_000, 10, mode="isolated")
        assert t.margin == 5_020
        k.tick(BTC, 454_000_000)
        assert k.is_open("u1", t.id)
        k.tick(BTC, 454_000_500)
    assert [c["reason"] for c in b.closes()] == ["liquidation"]
    _same(a, b)
