"""The formulas of trading-rules.md in integer fixed point.

Shared by the engine (which acts on them) and the API (which shows them), so
what the trader sees is computed by the same code that liquidates them.

Units: qty 1e-8 base, prices 1e-4 USD, money 1e-4 USD, rates ppm. ``side`` is
+1 (long) or -1 (short). Rounding follows units.py: what the trader pays rounds
up, what the trader books rounds down.
"""

from __future__ import annotations

from .units import NOTIONAL_DIV, RATE_SCALE, ceil_div

_RATE_DIV = NOTIONAL_DIV * RATE_SCALE


def notional(qty: int, price: int) -> int:
    return qty * price // NOTIONAL_DIV


def initial_margin(qty: int, price: int, leverage: int) -> int:
    """IM = q x fill / L, rounded up."""
    return ceil_div(qty * price, NOTIONAL_DIV * leverage)


def fee(qty: int, price: int, rate_ppm: int) -> int:
    """q x price x rate, rounded up."""
    return ceil_div(qty * price * rate_ppm, _RATE_DIV)


def pnl(side: int, qty: int, entry: int, price: int) -> int:
    """s x q x (price - E), rounded toward -infinity."""
    return (side * qty * (price - entry)) // NOTIONAL_DIV


def maintenance(qty: int, mark: int, mmr_ppm: int) -> int:
    """MM = q x M x mmr, rounded up."""
    return ceil_div(qty * mark * mmr_ppm, _RATE_DIV)


def funding_payment(side: int, qty: int, mark: int, rate_e9: int, funding_scale: int) -> int:
    """Signed amount the trade PAYS (positive) or receives (negative).

    pay = s x q x M x F. Paying rounds up, receiving rounds down (toward zero
    for the receiver), so the house never pays out more than it collects.
    """
    raw = side * qty * mark * rate_e9
    div = NOTIONAL_DIV * funding_scale
    return ceil_div(raw, div) if raw > 0 else -((-raw) // div)


def isolated_liquidation_price(side: int, entry: int, leverage: int, mmr_ppm: int) -> int:
    """trading-rules.md: long E(1-1/L)/(1-mmr); short E(1+1/L)/(1+mmr).

    This is the textbook figure shown to traders; the engine's exact trigger
    uses the trade's actual integer margin (see isolated_trigger_price).
    """
    if side > 0:
        num = entry * (leverage - 1) * RATE_SCALE
        den = leverage * (RATE_SCALE - mmr_ppm)
        return num // den
    num = entry * (leverage + 1) * RATE_SCALE
    den = leverage * (RATE_SCALE + mmr_ppm)
    return ceil_div(num, den)


def isolated_is_liquidatable(side: int, qty: int, entry: int, margin: int, mark: int, mmr_ppm: int) -> bool:
    """Isolated health: liquidate when IM + u <= MM."""
    return margin + pnl(side, qty, entry, mark) <= maintenance(qty, mark, mmr_ppm)


def isolated_trigger_price(side: int, qty: int, entry: int, margin: int, mmr_ppm: int, tick: int = 1) -> int:
    """The exact integer mark at which isolated health first fails.

    Long: the highest mark M with IM + u(M) <= MM(M) (liquidate when mark <= it).
    Short: the lowest such mark (liquidate when mark >= it).
    Computed from the closed form and corrected by stepping, so it agrees with
    isolated_is_liquidatable to the last unit.
    """
    # closed form with the actual margin: long M* = (E - IM/q) / (1 - mmr)
    q = qty
    if side > 0:
        est = ((entry * q - margin * NOTIONAL_DIV) * RATE_SCALE) // (q * (RATE_SCALE - mmr_ppm))
        est = max(est, 0)
        while isolated_is_liquidatable(side, q, entry, margin, est + 1, mmr_ppm):
            est += 1
        while est > 0 and not isolated_is_liquidatable(side, q, entry, margin, est, mmr_ppm):
            est -= 1
        return est
    est = ceil_div((entry * q + margin * NOTIONAL_DIV) * RATE_SCALE, q * (RATE_SCALE + mmr_ppm))
    while est > 1 and isolated_is_liquidatable(side, q, entry, margin, est - 1, mmr_ppm):
        est -= 1
    while not isolated_is_liquidatable(side, q, entry, margin, est, mmr_ppm):
        est += 1
    return est


def isolated_watch_level(side: int, qty: int, entry: int, margin: int, mmr_ppm: int) -> int:
    """A mark beyond which (long: at or below; short: at or above) EVERY mark
    that satisfies isolated_is_liquidatable lies: the level a trigger index
    must watch. O(1).

    Not isolated_trigger_price: with the rounded terms, IM + u <= MM is not
    monotone in the mark (u floors in steps of 1e8/q price units, MM ceils in
    its own steps), so short runs of liquidatable marks can sit just beyond the
    trigger price, where an index keyed on it would never look. Since
    floor(x) > x - 1 and ceil(y) < y + 1, liquidatable implies the exact
    value G = IM + s q (M - E) / 1e8 - q M mmr / 1e14 is below 2, a linear
    condition; the level is the last mark where it holds. Marks between the
    trigger price and this level are looked at and found healthy (a few money
    units of slack, i.e. at most 2e8/q price units).
    """
    d = NOTIONAL_DIV * RATE_SCALE
    if side > 0:
        # G < 2  <=>  q M (R - mmr) < 2 D + q E R - IM D   (D = 1e8 x R): largest such M
        num = 2 * d + qty * entry * RATE_SCALE - margin * d
        return (num - 1) // (qty * (RATE_SCALE - mmr_ppm))
    # G < 2  <=>  q M (R + mmr) > IM D + q E R - 2 D: smallest such M
    num = margin * d + qty * entry * RATE_SCALE - 2 * d
    return num // (qty * (RATE_SCALE + mmr_ppm)) + 1


def cross_liquidation_price(
    side: int, qty: int, entry: int, mmr_ppm: int, wallet: int, others_upnl: int, others_mm: int
) -> int | None:
    """The mark at which cross health fails for one trade, other marks fixed.

    (W + U_o - MM_o - s q E) / (q (mmr - s)), with W = balance + sum of cross IM.
    Returns None when no positive price liquidates the account.
    """
    # Work in exact rationals scaled to price units.
    num = (wallet + others_upnl - others_mm) * NOTIONAL_DIV - side * qty * entry
    den_ppm = qty * (mmr_ppm - side * RATE_SCALE)  # q (mmr - s), mmr in ppm
    if den_ppm == 0:
        return None
    price = (num * RATE_SCALE) // den_ppm if side > 0 else ceil_div(num * RATE_SCALE, den_ppm)
    return price if price > 0 else None
