import { describe, expect, it } from "vitest";
import type { EngineOrder, WireAccount, WireEvent, WireRestingOrder } from "../api/types";
import { noticeToast, marginToast } from "../live/notify";
import { eventNotices, normalizeAccount, normalizeOrder, orderNotice } from "./model";
import { checkOrder, isMarketable, type OrderContext, type OrderDraft } from "./orderForm";

const btc: OrderContext["market"] = {
  symbol: "BTC_USDC_PERP",
  bid: 999_990_000, // 99,999.0
  ask: 1_000_000_000, // 100,000.0
  mark: 999_995_000,
  maxLeverage: 100,
  takerFeePpm: 500,
  makerFeePpm: 200,
  mmrPpm: 5000,
  tickSize: 1000,
  qtyStep: 10_000,
  priceDecimals: 1,
  qtyDecimals: 4,
};
const ctx: OrderContext = { market: btc, balance: 50_000_000, available: 50_000_000, crossTrades: [], nowMs: 1_000_000 };
const limit: OrderDraft = {
  side: 1,
  orderType: "limit",
  qtyText: "0.1",
  leverage: 10,
  marginMode: "cross",
  slippageText: "0.5",
  limitPriceText: "96000",
  tpText: "",
  slText: "",
};

describe("limit orders in the order form", () => {
  it("reserves margin and the maker fee at the limit and builds the POST /orders body", () => {
    const c = checkOrder(limit, ctx);
    expect(c.errors).toEqual({});
    expect(c.marketable).toBe(false);
    expect(c.price).toBe(960_000_000);
    // IM = 0.1 x 96,000 / 10 = $960; maker fee 2 bps = $1.92
    expect(c.preview).toMatchObject({ initialMargin: 9_600_000, fee: 19_200, cost: 9_619_200 });
    expect(c.body).toBeNull();
    expect(c.limitBody).toEqual({
      asset: "BTC_USDC_PERP",
      type: "long",
      quantity: 0.1,
      leverage: 10,
      limitPrice: 960_000_000,
      decimal: 4,
      margin_mode: "cross",
    });
  });
  it("adds post-only and a good-till-time counted from now", () => {
    const c = checkOrder({ ...limit, postOnly: true, expiresInMs: 3_600_000, marginMode: "isolated" }, ctx);
    expect(c.limitBody).toMatchObject({ post_only: true, expires_at: 4_600_000, margin_mode: "isolated" });
  });
  it("knows when a limit crosses the book", () => {
    expect(isMarketable(1, 1_000_000_000, btc.bid, btc.ask)).toBe(true); // buy at the ask
    expect(isMarketable(1, 999_999_000, btc.bid, btc.ask)).toBe(false);
    expect(isMarketable(-1, 999_990_000, btc.bid, btc.ask)).toBe(true); // sell at the bid
    expect(isMarketable(-1, 999_991_000, btc.bid, btc.ask)).toBe(false);
    expect(isMarketable(1, 1_000_000_000, null, null)).toBe(false);
  });
  it("a crossing limit fills at the touch as a taker; post-only refuses it", () => {
    const c = checkOrder({ ...limit, limitPriceText: "101000" }, ctx);
    expect(c.marketable).toBe(true);
    expect(c.warnings[0]).toMatch(/fills at once at the ask 100,000.0/);
    // priced at the ask with the taker fee: IM $1,000, fee 5 bps = $5
    expect(c.preview).toMatchObject({ initialMargin: 10_000_000, fee: 50_000 });
    expect(c.limitBody?.limitPrice).toBe(1_010_000_000);
    const p = checkOrder({ ...limit, limitPriceText: "101000", postOnly: true }, ctx);
    expect(p.errors.price).toMatch(/Post-only/);
    expect(p.limitBody).toBeNull();
  });
  it("refuses a limit off the tick or without funds", () => {
    expect(checkOrder({ ...limit, limitPriceText: "96000.05" }, ctx).errors.price).toBe("Use steps of 0.1.");
    const big = checkOrder({ ...limit, qtyText: "10" }, ctx);
    expect(big.errors.funds).toBeDefined();
    expect(big.limitBody).toBeNull();
  });
});

const wireOrder: WireRestingOrder = {
  id: "o1",
  type: "short",
  asset: "ETH_USDC_PERP",
  quantity: 0.5,
  limitPrice: 36_000_000,
  leverage: 5,
  margin_mode: "isolated",
  reserved_margin: 3_600_000,
  reserved_fee: 3_600,
  decimal: 4,
  placed_ms: 1_700_000_000_000,
  createdAt: "2023-11-14T22:13:20.000Z",
  expires_at: null,
  reduce_only: false,
  reduce_only_trade_id: null,
  status: "open",
};
const engineOrder: EngineOrder = {
  id: "o2",
  market: "BTC_USDC_PERP",
  side: 1,
  qty: 1_000_000,
  limit_price: 960_000_000,
  leverage: 10,
  margin_mode: "cross",
  reserved_margin: 0,
  reserved_fee: 0,
  placed_ms: 1_700_000_000_000,
  expires_ms: 1_700_000_060_000,
  reduce_only: false,
  trade_id: null,
};

describe("resting orders", () => {
  it("normalises the REST shape and the engine's", () => {
    expect(normalizeOrder(wireOrder)).toEqual({
      id: "o1",
      market: "ETH_USDC_PERP",
      side: -1,
      qty: 50_000_000,
      limitPrice: 36_000_000,
      leverage: 5,
      marginMode: "isolated",
      reservedMargin: 3_600_000,
      reservedFee: 3_600,
      placedAt: 1_700_000_000_000,
      expiresAt: null,
      reduceOnly: false,
      reduceTradeId: null,
    });
    expect(normalizeOrder(engineOrder)).toMatchObject({ id: "o2", side: 1, qty: 1_000_000, limitPrice: 960_000_000, expiresAt: 1_700_000_060_000 });
    expect(normalizeOrder({ ...engineOrder, leverage: 0, trade_id: "t1" })).toMatchObject({ leverage: null, reduceOnly: true, reduceTradeId: "t1" });
    expect(normalizeOrder({ ...wireOrder, id: null })).toBeNull();
  });
  it("reads the account's orders, reserve and margin warning", () => {
    const wire: WireAccount = {
      balance: 49_996_400,
      equity: 49_996_400,
      margin_used: 0,
      maintenance: 0,
      available: 49_996_400,
      margin_ratio_bps: 0,
      unrealized_pnl: 0,
      decimal: 4,
      trades: [],
      orders: [wireOrder],
      reserved: 3_603_600,
      margin_warning: true,
    };
    const a = normalizeAccount(wire);
    expect(a.orders.map((o) => o.id)).toEqual(["o1"]);
    expect(a.reserved).toBe(3_603_600);
    expect(a.marginWarning).toBe(true);
    // an older reply without the figures: summed from the orders, no warning
    const older = normalizeAccount({ ...wire, reserved: undefined, margin_warning: undefined });
    expect(older.reserved).toBe(3_603_600);
    expect(older.marginWarning).toBe(false);
  });
});

const engineTrade = {
  id: "t9",
  market: "BTC_USDC_PERP",
  side: 1 as const,
  qty: 1_000_000,
  entry: 960_000_000,
  leverage: 10,
  margin: 960_000,
  margin_mode: "cross" as const,
};
const fmt = { priceDecimals: 1, qtyDecimals: 4 };

describe("order events -> toasts", () => {
  it("a limit fill is one toast, the order's, not the trade_opened one too", () => {
    const events: WireEvent[] = [
      { type: "order_closed", order: engineOrder, reason: "filled", trade_id: "t9" },
      { type: "trade_opened", trade: engineTrade },
    ];
    const notices = eventNotices(events);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({ kind: "order_filled", key: "open:t9", price: 960_000_000 });
    const t = noticeToast(notices[0], fmt);
    expect(t.title).toBe("Limit order filled");
    expect(t.body).toBe("Long 0.0100 BTC-PERP opened @ 96,000.0");
  });
  it("expiry, take-profit, stop-loss and limit closes", () => {
    const expired = orderNotice({ type: "order_closed", order: engineOrder, reason: "expired" });
    expect(noticeToast(expired!, fmt)).toMatchObject({ title: "Limit order expired", key: "order:o2" });
    expect(orderNotice({ type: "order_closed", order: engineOrder, reason: "cancelled" })).toBeNull();
    const closed = (reason: string): WireEvent => ({
      type: "trade_closed",
      trade: engineTrade,
      close_price: 980_000_000,
      closed_qty: 1_000_000,
      remaining_qty: 0,
      pnl: 200_000,
      reason,
    });
    const [tp, sl, lc] = eventNotices([closed("take_profit"), closed("stop_loss"), closed("limit_close")]);
    expect(noticeToast(tp, fmt)).toMatchObject({ title: "Take-profit filled", tone: "success" });
    expect(noticeToast(sl, fmt)).toMatchObject({ title: "Stop-loss filled", tone: "error" });
    expect(noticeToast(lc, fmt).title).toBe("Limit order filled");
    expect(noticeToast(lc, fmt).body).toBe("Long 0.0100 BTC-PERP closed @ 98,000.0 · PnL +$20.00");
  });
  it("margin warnings", () => {
    expect(marginToast("margin_warning", 8234)).toMatchObject({ tone: "danger", title: "Margin warning" });
    expect(marginToast("margin_warning", 8234)?.body).toMatch(/82.34%/);
    expect(marginToast("margin_ok", 6500)?.title).toBe("Margin back to normal");
    expect(marginToast("ledger", null)).toBeNull();
  });
});
