// The order form's arithmetic and checks, separate from the component so they
// are tested on their own. Everything is integers (see calc.ts); text typed by
// the trader is parsed exactly.

import type { OpenTradeBody, PlaceOrderBody } from "../api/types";
import { maxQuantity, previewOrder, type CrossPosition, type MarginMode, type OrderPreview, type Side } from "./calc";
import { parseUnits, PRICE_DECIMALS, QTY_DECIMALS, unitsToQtyNumber } from "./fixed";
import { formatPrice, formatQty } from "./format";
import type { Market } from "./model";

export type OrderType = "market" | "limit";

export interface OrderDraft {
  side: Side;
  orderType: OrderType;
  qtyText: string;
  leverage: number;
  marginMode: MarginMode;
  slippageText: string; // percent, e.g. "0.5"
  limitPriceText: string;
  tpText: string;
  slText: string;
  /** limit orders: refuse rather than fill at once as a taker */
  postOnly?: boolean;
  /** limit orders: good-till-time, relative to now; null/undefined = until cancelled */
  expiresInMs?: number | null;
}

export interface OrderContext {
  market: Pick<
    Market,
    "symbol" | "bid" | "ask" | "mark" | "maxLeverage" | "takerFeePpm" | "makerFeePpm" | "mmrPpm" | "tickSize" | "qtyStep" | "priceDecimals" | "qtyDecimals"
  >;
  balance: number | null;
  available: number | null;
  crossTrades: CrossPosition[];
  /** the clock for a limit order's expiry (default Date.now()) */
  nowMs?: number;
}

export interface OrderCheck {
  /** the price the order is expected to fill at: ask for a long, bid for a short, or the limit */
  price: number | null;
  qty: number | null;
  slippageBps: number | null;
  preview: OrderPreview | null;
  maxQty: number;
  errors: Partial<Record<"qty" | "leverage" | "slippage" | "price" | "tp" | "sl" | "funds", string>>;
  warnings: string[];
  /** the POST /trade/open body, when a market order is complete and valid */
  body: OpenTradeBody | null;
  /** the POST /orders body, when a limit order is complete and valid */
  limitBody: PlaceOrderBody | null;
  /** a limit order whose price crosses the book (fills at once as a taker unless post-only) */
  marketable: boolean;
}

/**
 * Does a limit order cross the book? A buy when the ask is at or below the
 * limit, a sell when the bid is at or above it (the engine's test).
 */
export function isMarketable(side: Side, limit: number, bid: number | null, ask: number | null): boolean {
  if (side > 0) return ask !== null && ask > 0 && ask <= limit;
  return bid !== null && bid > 0 && bid >= limit;
}

/** Percent text ("0.5") -> basis points (50); null unless a whole number of bps in 0..10000. */
export function parseSlippageBps(text: string): number | null {
  const bps = parseUnits(text, 2);
  if (bps === null || bps < 0n || bps > 10_000n) return null;
  return Number(bps);
}

function parsePrice(text: string, tick: number, priceDecimals: number): { value: number | null; error?: string } {
  if (!text.trim()) return { value: null };
  const u = parseUnits(text, PRICE_DECIMALS);
  if (u === null || u <= 0n) return { value: null, error: "Enter a positive price." };
  if (u % BigInt(tick) !== 0n) return { value: null, error: `Use steps of ${formatPrice(tick, { priceDecimals })}.` };
  return { value: Number(u) };
}

export function checkOrder(d: OrderDraft, ctx: OrderContext): OrderCheck {
  const m = ctx.market;
  const errors: OrderCheck["errors"] = {};
  const warnings: string[] = [];

  // Price the order is expected to fill at.
  let price: number | null;
  if (d.orderType === "limit") {
    const p = parsePrice(d.limitPriceText, m.tickSize, m.priceDecimals);
    if (p.error) errors.price = p.error;
    price = p.value;
  } else {
    price = d.side > 0 ? m.ask : m.bid;
    if (price === null || price <= 0) errors.price = "No price for this market yet.";
  }

  // Quantity: a positive multiple of the market's step.
  let qty: number | null = null;
  if (d.qtyText.trim()) {
    const u = parseUnits(d.qtyText, QTY_DECIMALS);
    if (u === null || u <= 0n) errors.qty = "Enter a positive quantity.";
    else if (u % BigInt(m.qtyStep) !== 0n) errors.qty = `Use steps of ${formatQty(m.qtyStep, m)}.`;
    else qty = Number(u);
  }

  if (!Number.isInteger(d.leverage) || d.leverage < 1 || d.leverage > m.maxLeverage) {
    errors.leverage = `Leverage is a whole number from 1 to ${m.maxLeverage}.`;
  }

  const slippageBps = parseSlippageBps(d.slippageText);
  if (d.orderType === "market" && slippageBps === null) errors.slippage = "Slippage is 0–100 % in steps of 0.01 %.";

  // A limit that crosses the book fills at once at the touch, as a taker
  // (the engine opens it like a market order); post-only refuses it instead.
  const marketable = d.orderType === "limit" && price !== null && isMarketable(d.side, price, m.bid, m.ask);
  if (marketable && !errors.price) {
    const touch = d.side > 0 ? m.ask : m.bid;
    const where = `${d.side > 0 ? "ask" : "bid"} ${formatPrice(touch, { priceDecimals: m.priceDecimals })}`;
    if (d.postOnly) errors.price = `Post-only: this price would fill at once (the ${where}); move it away from the book.`;
    else warnings.push(`This price crosses the book: the order fills at once at the ${where} as a taker.`);
  }
  const fillPrice = marketable && !d.postOnly ? (d.side > 0 ? m.ask : m.bid) : price;
  const feePpm = d.orderType === "limit" && !marketable ? m.makerFeePpm : m.takerFeePpm;
  const lev = errors.leverage ? 1 : d.leverage;
  const preview =
    qty !== null && fillPrice !== null && fillPrice > 0 && !errors.leverage
      ? previewOrder({
          side: d.side,
          qty,
          price: fillPrice,
          leverage: lev,
          marginMode: d.marginMode,
          feePpm,
          mmrPpm: m.mmrPpm,
          balance: ctx.balance ?? 0,
          crossTrades: ctx.crossTrades,
        })
      : null;

  const maxQty =
    fillPrice !== null && fillPrice > 0 && ctx.available !== null
      ? maxQuantity(ctx.available, fillPrice, lev, feePpm, m.qtyStep)
      : 0;

  if (preview && ctx.available !== null && preview.cost > ctx.available) {
    errors.funds = "Not enough available margin for this size and leverage.";
  }

  // Take-profit / stop-loss: on the right side of the entry.
  const tp = parsePrice(d.tpText, m.tickSize, m.priceDecimals);
  const sl = parsePrice(d.slText, m.tickSize, m.priceDecimals);
  if (tp.error) errors.tp = tp.error;
  if (sl.error) errors.sl = sl.error;
  if (price !== null && tp.value !== null) {
    if (d.side > 0 && tp.value <= price) errors.tp = "A long's take-profit must be above the entry price.";
    if (d.side < 0 && tp.value >= price) errors.tp = "A short's take-profit must be below the entry price.";
  }
  if (price !== null && sl.value !== null) {
    if (d.side > 0 && sl.value >= price) errors.sl = "A long's stop-loss must be below the entry price.";
    if (d.side < 0 && sl.value <= price) errors.sl = "A short's stop-loss must be above the entry price.";
  }
  const liq = preview?.liquidationPrice ?? null;
  if (sl.value !== null && !errors.sl && liq !== null && liq > 0) {
    if ((d.side > 0 && sl.value <= liq) || (d.side < 0 && sl.value >= liq)) {
      warnings.push("The stop-loss is past the estimated liquidation price; liquidation would come first.");
    }
  }

  const complete = qty !== null && price !== null && Object.keys(errors).length === 0;
  const body: OpenTradeBody | null =
    complete && d.orderType === "market" && slippageBps !== null
      ? {
          asset: m.symbol,
          type: d.side > 0 ? "long" : "short",
          quantity: unitsToQtyNumber(qty!),
          leverage: d.leverage,
          slippage: slippageBps,
          openPrice: price!,
          decimal: 4,
          margin_mode: d.marginMode,
          ...(tp.value !== null ? { take_profit: tp.value } : {}),
          ...(sl.value !== null ? { stop_loss: sl.value } : {}),
        }
      : null;

  const limitBody: PlaceOrderBody | null =
    complete && d.orderType === "limit"
      ? {
          asset: m.symbol,
          type: d.side > 0 ? "long" : "short",
          quantity: unitsToQtyNumber(qty!),
          leverage: d.leverage,
          limitPrice: price!,
          decimal: 4,
          margin_mode: d.marginMode,
          ...(d.postOnly ? { post_only: true } : {}),
          ...(d.expiresInMs ? { expires_at: (ctx.nowMs ?? Date.now()) + d.expiresInMs } : {}),
        }
      : null;

  return { price, qty, slippageBps, preview, maxQty, errors, warnings, body, limitBody, marketable };
}
