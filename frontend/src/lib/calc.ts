// The formulas of trading-rules.md in integer fixed point, mirroring the
// engine's opex_common/margin.py (same units, same rounding), so what the order
// form shows before submit is what the engine will charge.
//
// Units: quantity 1e-8 base units, prices and USD 1e-4, rates ppm. Inputs and
// outputs are JS numbers holding integers (safe far beyond any balance here);
// products are computed in BigInt. Side is +1 (long) or -1 (short).
// Rounding: what the trader pays or locks rounds up (margin, fee,
// maintenance); what the trader books rounds down (PnL).

export type Side = 1 | -1;
export type MarginMode = "cross" | "isolated";

const NOTIONAL_DIV = 100_000_000n; // qty(1e-8) * price(1e-4) / 1e8 -> USD(1e-4)
const RATE_SCALE = 1_000_000n; // ppm
const RATE_DIV = NOTIONAL_DIV * RATE_SCALE;

const B = (n: number): bigint => BigInt(Math.trunc(n));

/** floor(a / b) for any signs (BigInt division truncates toward zero). */
export function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && (a < 0n) !== (b < 0n) ? q - 1n : q;
}

/** ceil(a / b) for any signs. */
export function ceilDiv(a: bigint, b: bigint): bigint {
  return -floorDiv(-a, b);
}

/** Basis points (as /markets sends them) -> ppm: 5 bps -> 500. */
export function bpsToPpm(bps: number): number {
  return Math.round(bps * 100);
}

/** mmr = 1 / (2 x max_leverage), in ppm, floored like the engine. */
export function maintenanceRatePpm(maxLeverage: number): number {
  return Math.floor(1_000_000 / (2 * maxLeverage));
}

/** notional = q x price. */
export function notional(qty: number, price: number): number {
  return Number(floorDiv(B(qty) * B(price), NOTIONAL_DIV));
}

/** IM = q x fill / L, rounded up. */
export function initialMargin(qty: number, price: number, leverage: number): number {
  return Number(ceilDiv(B(qty) * B(price), NOTIONAL_DIV * B(leverage)));
}

/** fee = q x price x rate, rounded up. */
export function fee(qty: number, price: number, ratePpm: number): number {
  return Number(ceilDiv(B(qty) * B(price) * B(ratePpm), RATE_DIV));
}

/** u = s x q x (price - E), rounded toward -infinity. */
export function pnl(side: Side, qty: number, entry: number, price: number): number {
  return Number(floorDiv(B(side) * B(qty) * (B(price) - B(entry)), NOTIONAL_DIV));
}

/** MM = q x M x mmr, rounded up. */
export function maintenance(qty: number, mark: number, mmrPpm: number): number {
  return Number(ceilDiv(B(qty) * B(mark) * B(mmrPpm), RATE_DIV));
}

/** Isolated liquidation price: long E(1-1/L)/(1-mmr), short E(1+1/L)/(1+mmr). */
export function isolatedLiquidationPrice(side: Side, entry: number, leverage: number, mmrPpm: number): number {
  const E = B(entry);
  const L = B(leverage);
  const mmr = B(mmrPpm);
  if (side > 0) {
    return Number(floorDiv(E * (L - 1n) * RATE_SCALE, L * (RATE_SCALE - mmr)));
  }
  return Number(ceilDiv(E * (L + 1n) * RATE_SCALE, L * (RATE_SCALE + mmr)));
}

/** Isolated health, as the engine checks it: liquidate when IM + u <= MM. */
export function isolatedIsLiquidatable(side: Side, qty: number, entry: number, margin: number, mark: number, mmrPpm: number): boolean {
  return margin + pnl(side, qty, entry, mark) <= maintenance(qty, mark, mmrPpm);
}

/**
 * The exact mark at which an isolated trade with `margin` locked is
 * liquidated (margin.isolated_trigger_price): long, the highest mark with
 * IM + u <= MM; short, the lowest. The closed form (E ∓ IM/q) / (1 ∓ mmr),
 * then corrected by stepping so that it agrees with the integer health test.
 * Used after margin is added, when the leverage formula no longer applies.
 */
export function isolatedTriggerPrice(side: Side, qty: number, entry: number, margin: number, mmrPpm: number): number {
  if (qty <= 0) return 0;
  const q = B(qty);
  const liq = (m: bigint) => isolatedIsLiquidatable(side, qty, entry, margin, Number(m), mmrPpm);
  if (side > 0) {
    let est = floorDiv((B(entry) * q - B(margin) * NOTIONAL_DIV) * RATE_SCALE, q * (RATE_SCALE - B(mmrPpm)));
    if (est < 0n) est = 0n;
    while (liq(est + 1n)) est += 1n;
    while (est > 0n && !liq(est)) est -= 1n;
    return Number(est);
  }
  let est = ceilDiv((B(entry) * q + B(margin) * NOTIONAL_DIV) * RATE_SCALE, q * (RATE_SCALE + B(mmrPpm)));
  while (est > 1n && liq(est - 1n)) est -= 1n;
  while (!liq(est)) est += 1n;
  return Number(est);
}

/**
 * Cross liquidation price of one trade, other marks held fixed:
 * (W + U_o - MM_o - s q E) / (q (mmr - s)), W = balance + sum of cross IM.
 * Null when no positive mark liquidates the account.
 */
export function crossLiquidationPrice(
  side: Side,
  qty: number,
  entry: number,
  mmrPpm: number,
  wallet: number,
  othersUpnl: number,
  othersMm: number,
): number | null {
  const q = B(qty);
  const num = (B(wallet) + B(othersUpnl) - B(othersMm)) * NOTIONAL_DIV - B(side) * q * B(entry);
  const den = q * (B(mmrPpm) - B(side) * RATE_SCALE);
  if (den === 0n) return null;
  const price = side > 0 ? floorDiv(num * RATE_SCALE, den) : ceilDiv(num * RATE_SCALE, den);
  return price > 0n ? Number(price) : null;
}

/** An open cross trade as the cross formulas need it. */
export interface CrossPosition {
  side: Side;
  qty: number;
  entry: number;
  margin: number;
  mark: number;
  mmrPpm: number;
}

export interface OrderPreviewInput {
  side: Side;
  qty: number; // 1e-8 units
  price: number; // expected fill: ask for a long, bid for a short (or the limit price)
  leverage: number;
  marginMode: MarginMode;
  feePpm: number;
  mmrPpm: number;
  /** free cash (GET /account balance); used for the cross liquidation price */
  balance: number;
  /** the account's other open cross trades */
  crossTrades: CrossPosition[];
}

export interface OrderPreview {
  notional: number;
  initialMargin: number;
  fee: number;
  /** initial margin + fee: what leaves the balance at open */
  cost: number;
  liquidationPrice: number | null;
}

/** What the order form shows before submit: margin, fee, estimated liquidation price. */
export function previewOrder(i: OrderPreviewInput): OrderPreview {
  const im = initialMargin(i.qty, i.price, i.leverage);
  const f = fee(i.qty, i.price, i.feePpm);
  let liq: number | null;
  if (i.marginMode === "isolated") {
    liq = isolatedLiquidationPrice(i.side, i.price, i.leverage, i.mmrPpm);
  } else {
    // After the open: balance' = balance - IM - fee, and W = balance' + IM + sum(other IM).
    let otherIm = 0;
    let otherU = 0;
    let otherMm = 0;
    for (const t of i.crossTrades) {
      otherIm += t.margin;
      otherU += pnl(t.side, t.qty, t.entry, t.mark);
      otherMm += maintenance(t.qty, t.mark, t.mmrPpm);
    }
    const wallet = i.balance - f + otherIm;
    liq = crossLiquidationPrice(i.side, i.qty, i.price, i.mmrPpm, wallet, otherU, otherMm);
  }
  return { notional: notional(i.qty, i.price), initialMargin: im, fee: f, cost: im + f, liquidationPrice: liq };
}

/**
 * The largest quantity (a multiple of `step`) whose margin plus fee fits in
 * `available`: q <= A / (P (1/L + f)), then stepped down until the rounded-up
 * cost fits.
 */
export function maxQuantity(available: number, price: number, leverage: number, feePpm: number, step: number): number {
  if (available <= 0 || price <= 0 || step <= 0) return 0;
  const A = B(available);
  const P = B(price);
  const L = B(leverage);
  const S = B(step);
  let q = (A * NOTIONAL_DIV * L * RATE_SCALE) / (P * (RATE_SCALE + L * B(feePpm)));
  q = (q / S) * S;
  while (q > 0n && initialMargin(Number(q), price, leverage) + fee(Number(q), price, feePpm) > available) {
    q -= S;
  }
  return Number(q);
}

/** Slippage check the engine applies: |fill - seen| <= seen x bps / 10^4. */
export function withinSlippage(seen: number, fill: number, slippageBps: number): boolean {
  return Math.abs(fill - seen) * 10_000 <= seen * slippageBps;
}
