// The app's own view of markets, trades and the account, normalised from the
// wire shapes once, at the edge. Money and prices stay 4-decimal integers;
// quantities become integers of 1e-8 base units.

import type {
  EngineOrder,
  EngineTrade,
  WireAccount,
  WireClosedTrade,
  WireEvent,
  WireLedgerEntry,
  WireMarket,
  WireRestingOrder,
  WireTrade,
} from "../api/types";
import { bpsToPpm, maintenanceRatePpm, type MarginMode, type Side } from "./calc";
import { decimalsOfStep, parseUnits, PRICE_DECIMALS, QTY_DECIMALS, qtyToUnits } from "./fixed";
import { toMillis } from "./format";

export interface Market {
  symbol: string;
  name: string;
  bid: number | null;
  ask: number | null;
  mark: number | null;
  index: number | null;
  fundingRate: string | null;
  nextFundingTime: number | null;
  maxLeverage: number;
  takerFeePpm: number;
  makerFeePpm: number;
  takerFeeBps: number;
  mmrPpm: number;
  tickSize: number; // price units (1e-4)
  qtyStep: number; // 1e-8 units
  priceDecimals: number;
  qtyDecimals: number;
  stale: boolean;
  change24hBps: number | null;
}

export interface Trade {
  id: string;
  market: string;
  side: Side;
  qty: number; // 1e-8 units
  entry: number;
  leverage: number;
  margin: number;
  marginMode: MarginMode;
  mark: number | null;
  unrealizedPnl: number | null;
  liquidationPrice: number | null;
  fees: number | null;
  funding: number | null;
  takeProfit: number | null;
  stopLoss: number | null;
  openedAt: number | null; // ms
}

/** A resting limit order. */
export interface RestingOrder {
  id: string;
  market: string;
  side: Side;
  qty: number; // 1e-8 units
  limitPrice: number;
  leverage: number | null; // null: reduce-only
  marginMode: MarginMode;
  reservedMargin: number;
  reservedFee: number;
  placedAt: number | null; // ms
  expiresAt: number | null; // ms; null: until cancelled
  reduceOnly: boolean;
  reduceTradeId: string | null;
}

export interface Account {
  balance: number;
  equity: number;
  marginUsed: number;
  maintenance: number;
  available: number;
  marginRatioBps: number;
  unrealizedPnl: number;
  trades: Trade[];
  orders: RestingOrder[];
  /** margin + fee held by resting orders: out of the balance and not in equity */
  reserved: number;
  /** the engine's flag: cross margin ratio reached 80% (cleared below 70%) */
  marginWarning: boolean;
}

export interface ClosedTrade {
  id: string;
  market: string;
  side: Side;
  qty: number;
  entry: number;
  exit: number;
  leverage: number;
  margin: number;
  pnl: number;
  liquidated: boolean;
  marginMode: MarginMode | null;
  fees: number | null;
  funding: number | null;
  reason: string | null;
  time: number; // ms, close time when known, else open time
}

export interface LedgerEntry {
  id: string;
  kind: string;
  amount: number;
  balanceAfter: number;
  tradeId: string | null;
  market: string | null;
  time: number;
}

/** Rescale an integer sent with `decimal` d to the app's 4 decimals. */
export function rescale(value: number | null | undefined, decimal: number | undefined): number | null {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const d = decimal ?? PRICE_DECIMALS;
  if (d === PRICE_DECIMALS) return value;
  return d < PRICE_DECIMALS ? value * 10 ** (PRICE_DECIMALS - d) : Math.round(value / 10 ** (d - PRICE_DECIMALS));
}

function req(value: number | null | undefined, decimal?: number): number {
  return rescale(value, decimal) ?? 0;
}

/**
 * tick_size: contracts.md puts prices on the wire as 4-decimal ints, so an
 * integer is read in those units (1000 = 0.1); decimal text or a fractional
 * number ("0.1", 0.1) is read as a price.
 */
export function parseTickSize(tick: number | string, decimal = PRICE_DECIMALS): number {
  if (typeof tick === "number" && Number.isInteger(tick)) return rescale(tick, decimal) ?? 1;
  const units = parseUnits(String(tick), PRICE_DECIMALS);
  return units !== null && units > 0n ? Number(units) : 1;
}

/** qty_step: base units, as every quantity on the wire (0.0001). */
export function parseQtyStep(step: number | string): number {
  const units = qtyToUnits(step);
  return units !== null && units > 0 ? units : 1;
}

export function normalizeMarket(m: WireMarket): Market {
  const tickSize = parseTickSize(m.tick_size, m.decimal);
  const qtyStep = parseQtyStep(m.qty_step);
  return {
    symbol: m.symbol,
    name: m.name,
    bid: rescale(m.bid, m.decimal),
    ask: rescale(m.ask, m.decimal),
    mark: rescale(m.mark, m.decimal),
    index: rescale(m.index, m.decimal),
    fundingRate: m.funding_rate ?? null,
    nextFundingTime: m.next_funding_time ?? null,
    maxLeverage: m.max_leverage,
    takerFeePpm: bpsToPpm(m.taker_fee_bps),
    makerFeePpm: bpsToPpm(m.maker_fee_bps),
    takerFeeBps: m.taker_fee_bps,
    mmrPpm: maintenanceRatePpm(m.max_leverage),
    tickSize,
    qtyStep,
    priceDecimals: decimalsOfStep(tickSize, PRICE_DECIMALS),
    qtyDecimals: decimalsOfStep(qtyStep, QTY_DECIMALS),
    stale: Boolean(m.stale),
    change24hBps: m.change_24h_bps ?? null,
  };
}

function sideOf(value: unknown): Side {
  return value === "short" || value === -1 || value === "-1" ? -1 : 1;
}

function modeOf(value: unknown): MarginMode {
  return value === "isolated" ? "isolated" : "cross";
}

function isEngineTrade(t: WireTrade | EngineTrade): t is EngineTrade {
  return (t as EngineTrade).qty !== undefined && (t as WireTrade).quantity === undefined;
}

function opt(value: number | null | undefined, decimal?: number): number | null {
  return rescale(value, decimal);
}

/** An open trade from GET /account, GET /trade/open, an open reply or an event (engine shape). */
export function normalizeTrade(t: WireTrade | EngineTrade, decimal?: number): Trade {
  if (isEngineTrade(t)) {
    return {
      id: String(t.id),
      market: t.market,
      side: sideOf(t.side),
      qty: t.qty,
      entry: req(t.entry, decimal),
      leverage: t.leverage,
      margin: req(t.margin, decimal),
      marginMode: modeOf(t.margin_mode),
      mark: null,
      unrealizedPnl: null,
      liquidationPrice: null,
      fees: opt(t.fees, decimal),
      funding: opt(t.funding, decimal),
      takeProfit: opt(t.take_profit, decimal),
      stopLoss: opt(t.stop_loss, decimal),
      openedAt: t.opened_ms ?? null,
    };
  }
  const opened = toMillis(t.opened_ms ?? t.createdAt ?? null);
  return {
    id: String(t.id),
    market: t.asset,
    side: sideOf(t.type),
    qty: qtyToUnits(t.quantity) ?? 0,
    entry: req(t.openPrice, decimal),
    leverage: t.leverage,
    margin: req(t.margin, decimal),
    marginMode: modeOf(t.margin_mode),
    mark: opt(t.mark, decimal),
    unrealizedPnl: opt(t.unrealized_pnl, decimal),
    liquidationPrice: opt(t.liquidation_price, decimal),
    fees: opt(t.fees ?? t.fee, decimal),
    funding: opt(t.funding, decimal),
    takeProfit: opt(t.take_profit, decimal),
    stopLoss: opt(t.stop_loss, decimal),
    openedAt: Number.isFinite(opened) ? opened : null,
  };
}

function isEngineOrder(o: EngineOrder | WireRestingOrder): o is EngineOrder {
  return (o as EngineOrder).qty !== undefined && (o as WireRestingOrder).quantity === undefined;
}

/** A resting order from GET /orders, GET /account or a push event (engine shape); null if it has no id. */
export function normalizeOrder(o: EngineOrder | WireRestingOrder, decimal?: number): RestingOrder | null {
  if (!o || o.id === null || o.id === undefined) return null;
  if (isEngineOrder(o)) {
    const reduceTradeId = o.trade_id ?? null;
    return {
      id: String(o.id),
      market: o.market,
      side: sideOf(o.side),
      qty: o.qty,
      limitPrice: req(o.limit_price, decimal),
      leverage: o.leverage > 0 ? o.leverage : null,
      marginMode: modeOf(o.margin_mode),
      reservedMargin: req(o.reserved_margin, decimal),
      reservedFee: req(o.reserved_fee, decimal),
      placedAt: o.placed_ms ?? null,
      expiresAt: o.expires_ms ?? null,
      reduceOnly: Boolean(o.reduce_only) || reduceTradeId !== null,
      reduceTradeId,
    };
  }
  const d = o.decimal ?? decimal;
  const placed = toMillis(o.placed_ms ?? o.createdAt ?? null);
  const reduceTradeId = o.reduce_only_trade_id ?? null;
  return {
    id: String(o.id),
    market: o.asset,
    side: sideOf(o.type),
    qty: qtyToUnits(o.quantity) ?? 0,
    limitPrice: req(o.limitPrice, d),
    leverage: o.leverage !== null && o.leverage !== undefined && o.leverage > 0 ? o.leverage : null,
    marginMode: modeOf(o.margin_mode),
    reservedMargin: req(o.reserved_margin, d),
    reservedFee: req(o.reserved_fee, d),
    placedAt: Number.isFinite(placed) ? placed : null,
    expiresAt: o.expires_at ?? null,
    reduceOnly: Boolean(o.reduce_only) || reduceTradeId !== null,
    reduceTradeId,
  };
}

export function normalizeAccount(a: WireAccount): Account {
  const d = a.decimal;
  const orders = (a.orders ?? []).map((o) => normalizeOrder(o, d)).filter((o): o is RestingOrder => o !== null);
  return {
    balance: req(a.balance, d),
    equity: req(a.equity, d),
    marginUsed: req(a.margin_used, d),
    maintenance: req(a.maintenance, d),
    available: req(a.available, d),
    marginRatioBps: a.margin_ratio_bps ?? 0,
    unrealizedPnl: req(a.unrealized_pnl, d),
    trades: (a.trades ?? []).map((t) => normalizeTrade(t, d)),
    orders,
    reserved: a.reserved !== undefined ? req(a.reserved, d) : orders.reduce((s, o) => s + o.reservedMargin + o.reservedFee, 0),
    marginWarning: a.margin_warning === true,
  };
}

export function normalizeClosedTrade(t: WireClosedTrade): ClosedTrade {
  const d = t.decimal;
  const time = toMillis(t.closedAt ?? t.closed_at ?? t.createdAt ?? null);
  return {
    id: String(t.id),
    market: t.asset,
    side: sideOf(t.type),
    qty: qtyToUnits(t.quantity) ?? 0,
    entry: req(t.openPrice, d),
    exit: req(t.closePrice, d),
    leverage: t.leverage,
    margin: req(t.margin, d),
    pnl: req(t.pnl, d),
    liquidated: Boolean(t.liquidated),
    marginMode: t.margin_mode ? modeOf(t.margin_mode) : null,
    fees: opt(t.fees ?? t.fee, d),
    funding: opt(t.funding, d),
    reason: t.reason ?? (t.liquidated ? "liquidation" : null),
    time: Number.isFinite(time) ? time : 0,
  };
}

export function normalizeLedgerEntry(e: WireLedgerEntry, decimal?: number): LedgerEntry {
  const time = toMillis(e.created_at);
  return {
    id: String(e.id),
    kind: e.kind,
    amount: req(e.amount, decimal),
    balanceAfter: req(e.balance_after, decimal),
    tradeId: e.trade_id ?? null,
    market: e.asset ?? null,
    time: Number.isFinite(time) ? time : 0,
  };
}

/** A push event reduced to what a toast says. */
export interface TradeNotice {
  key: string;
  kind:
    | "opened"
    | "closed"
    | "liquidated"
    | "take_profit"
    | "stop_loss"
    | "partial"
    | "limit_close"
    | "order_filled"
    | "order_expired"
    | "order_dropped";
  tradeId: string;
  market: string;
  side: Side;
  qty: number; // 1e-8 units of the fill
  price: number | null;
  pnl: number | null;
}

/**
 * trade_opened / trade_closed events -> notices. The trade inside may be in
 * the engine's shape (qty in 1e-8 units) or the REST shape (quantity in base
 * units); closed_qty / remaining_qty follow the same unit as the trade.
 */
export function eventNotice(e: WireEvent): TradeNotice | null {
  if (!e.trade || (e.type !== "trade_opened" && e.type !== "trade_closed")) return null;
  const engineShape = isEngineTrade(e.trade);
  const trade = normalizeTrade(e.trade);
  const qtyOf = (v: number | undefined): number | null =>
    v === undefined || v === null ? null : engineShape ? v : qtyToUnits(v);
  if (e.type === "trade_opened") {
    return {
      key: `open:${trade.id}`,
      kind: "opened",
      tradeId: trade.id,
      market: trade.market,
      side: trade.side,
      qty: trade.qty,
      price: trade.entry,
      pnl: null,
    };
  }
  const closedQty = qtyOf(e.closed_qty) ?? trade.qty;
  const remaining = qtyOf(e.remaining_qty) ?? 0;
  const reason = e.reason ?? (e.liquidated ? "liquidation" : "close");
  let kind: TradeNotice["kind"] = "closed";
  if (e.liquidated || reason === "liquidation") kind = "liquidated";
  else if (reason === "take_profit") kind = "take_profit";
  else if (reason === "stop_loss") kind = "stop_loss";
  else if (reason === "limit_close") kind = "limit_close";
  else if (remaining > 0) kind = "partial";
  return {
    key: `close:${trade.id}`,
    kind,
    tradeId: trade.id,
    market: trade.market,
    side: trade.side,
    qty: closedQty,
    price: e.close_price ?? null,
    pnl: e.pnl ?? null,
  };
}

/**
 * order_closed events -> notices: an opening fill ("filled" with the new
 * trade's id; keyed like that trade's own "opened" notice, which it replaces),
 * an expiry, or an order dropped because its trade closed. Cancels are the
 * trader's own doing (the REST reply says so) and reduce-only fills are told
 * by their trade_closed event (reason limit_close): both give null.
 */
export function orderNotice(e: WireEvent): TradeNotice | null {
  if (e.type !== "order_closed" || !e.order) return null;
  const o = normalizeOrder(e.order);
  if (!o) return null;
  const base = { tradeId: e.trade_id ?? o.reduceTradeId ?? "", market: o.market, side: o.side, qty: o.qty, pnl: null };
  switch (e.reason) {
    case "filled":
      if (!e.trade_id) return null;
      return { ...base, key: `open:${e.trade_id}`, kind: "order_filled", price: o.limitPrice };
    case "expired":
      return { ...base, key: `order:${o.id}`, kind: "order_expired", price: o.limitPrice };
    case "trade_closed":
    case "trade_gone":
      return { ...base, key: `order:${o.id}`, kind: "order_dropped", price: o.limitPrice };
    default:
      return null;
  }
}

/**
 * The notices of one push's events, in order. A limit order's fill comes as
 * order_closed (filled) + trade_opened for the same trade: one notice, the
 * order's ("Limit order filled"), not two.
 */
export function eventNotices(events: WireEvent[]): TradeNotice[] {
  const filledTrades = new Set<string>();
  for (const e of events) if (e.type === "order_closed" && e.reason === "filled" && e.trade_id) filledTrades.add(e.trade_id);
  const out: TradeNotice[] = [];
  for (const e of events) {
    const n = e.type === "order_closed" ? orderNotice(e) : eventNotice(e);
    if (!n) continue;
    if (n.kind === "opened" && filledTrades.has(n.tradeId)) continue;
    out.push(n);
  }
  return out;
}
