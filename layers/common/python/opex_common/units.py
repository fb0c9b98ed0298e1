"""Fixed-point units used everywhere inside Opex.

Every amount in the engine is a Python ``int`` in one of these units. Text and
JSON numbers are converted with :class:`decimal.Decimal` (``round(value * 10**p)``),
never through ``float * scale``.

| quantity            | unit                    | scale constant   |
|---------------------|-------------------------|------------------|
| USD amounts (money) | 1e-4 USD ("pips")       | ``USD_SCALE``    |
| prices              | 1e-4 USD per base unit  | ``PRICE_SCALE``  |
| quantities          | 1e-8 base units ("sats")| ``QTY_SCALE``    |
| fee / margin rates  | 1e-6 (parts per million)| ``RATE_SCALE``   |
| funding rates       | 1e-9 (parts per billion)| ``FUNDING_SCALE``|
| basis points        | 1e-4                    | ``BPS_SCALE``    |

The wire format of api-v1 (prices and USD with ``"decimal": 4``) is exactly the
engine's unit, so REST needs no conversion for money and prices.

Rounding rules (all deterministic, integer-only):
- amounts the trader *pays or locks* (fees, initial margin, maintenance) round
  **up** (ceil): the house never under-collects;
- amounts the trader *receives or books* (PnL, funding received) round **down**
  (floor, i.e. toward -infinity for losses too): the house never over-pays;
- conversions of outside decimals (prices from the feed) round half-even.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

USD_DECIMALS = 4
USD_SCALE = 10**USD_DECIMALS
PRICE_DECIMALS = 4
PRICE_SCALE = 10**PRICE_DECIMALS
QTY_DECIMALS = 8
QTY_SCALE = 10**QTY_DECIMALS
RATE_SCALE = 1_000_000
FUNDING_DECIMALS = 9
FUNDING_SCALE = 10**FUNDING_DECIMALS
BPS_SCALE = 10_000

# notional (USD units) = qty * price // NOTIONAL_DIV
NOTIONAL_DIV = QTY_SCALE  # qty(1e-8) * price(1e-4) / 1e8 -> USD(1e-4)


class UnitError(ValueError):
    """A value from outside could not be converted to an exact fixed-point unit."""


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division for a positive divisor."""
    return -((-a) // b)


def _to_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool):
        raise UnitError(f"{what} must be a number, not a boolean")
    if isinstance(value, float):
        # repr() gives the shortest text that round-trips: what the client wrote.
        value = repr(value)
    if isinstance(value, (int, str, Decimal)):
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise UnitError(f"{what} is not a number: {value!r}") from None
        if not d.is_finite():
            raise UnitError(f"{what} must be finite")
        return d
    raise UnitError(f"{what} must be a number")


def to_units_exact(value: object, decimals: int, what: str) -> int:
    """Convert ``value`` to an integer of ``10**-decimals``; refuse if not exact."""
    d = _to_decimal(value, what)
    scaled = d.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise UnitError(f"{what} has more than {decimals} decimals: {value!r}")
    return int(scaled)


def to_units_rounded(value: object, decimals: int, what: str) -> int:
    """Convert ``value`` to an integer of ``10**-decimals``, rounding half-even."""
    d = _to_decimal(value, what)
    return int(d.scaleb(decimals).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def price_from_text(value: object, what: str = "price") -> int:
    return to_units_rounded(value, PRICE_DECIMALS, what)


def funding_rate_from_text(value: object, what: str = "funding rate") -> int:
    return to_units_rounded(value, FUNDING_DECIMALS, what)


def qty_from_text(value: object, what: str = "quantity") -> int:
    return to_units_exact(value, QTY_DECIMALS, what)


def units_to_decimal(value: int, decimals: int) -> Decimal:
    return Decimal(value).scaleb(-decimals)


def qty_to_decimal(qty: int) -> Decimal:
    """Quantity as a Decimal of base units, normalised (0.10000000 -> 0.1)."""
    d = units_to_decimal(qty, QTY_DECIMALS)
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def usd_text(amount: int) -> str:
    """Human text for a USD amount, e.g. 50000000 -> '5000.0000'."""
    return f"{units_to_decimal(amount, USD_DECIMALS):.4f}"
