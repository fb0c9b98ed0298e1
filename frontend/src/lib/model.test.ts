import { describe, expect, it } from "vitest";
import type { WireAccount, WireMarket } from "../api/types";
import {
  eventNotice,
  normalizeAccount,
  normalizeClosedTrade,
  normalizeMarket,
  parseQtyStep,
  parseTickSize,
  rescale,
} from "./model";

const wireBtc: WireMarket = {
  symbol: "BTC_USDC_PERP",
  name: "Bitcoin",
  bid: 971_230_000,
  ask: 971_240_000,
  mark: 971_235_000,
  index: 971_200_000,
  decimal: 4,
  funding_rate: "0.0000125",
  next_funding_time: 1_700_003_600_000,
  max_leverage: 100,
  taker_fee_bps: 5,
  maker_fee_bps: 2,
  tick_size: 1000,
  qty_step: 0.0001,
  stale: false,
  updated_at: 1_700_000_000_000,
  change_24h_bps: -125,
};

describe("market steps", () => {
  it("reads tick_size as a 4-decimal int, or as a decimal price", () => {
    expect(parseTickSize(1000)).toBe(1000);
    expect(parseTickSize(0.1)).toBe(1000);
    expect(parseTickSize("0.01")).toBe(100);
  });
  it("reads qty_step in base units", () => {
    expect(parseQtyStep(0.0001)).toBe(10_000);
    expect(parseQtyStep("0.01")).toBe(1_000_000);
  });
  it("normalises a market with derived decimals and rates", () => {
    const m = normalizeMarket(wireBtc);
    expect(m.priceDecimals).toBe(1);
    expect(m.qtyDecimals).toBe(4);
    expect(m.takerFeePpm).toBe(500);
    expect(m.mmrPpm).toBe(5000);
    expect(m.change24hBps).toBe(-125);
    expect(m.bid).toBe(971_230_000);
  });
  it("rescales other decimals to 4", () => {
    expect(rescale(12345, 2)).toBe(1_234_500);
    expect(rescale(123_456_789, 6)).toBe(1_234_568);
    expect(rescale(null, 4)).toBeNull();
  });
});

describe("account", () => {
  it("turns quantities into 1e-8 units and keeps money as 4-decimal ints", () => {
    const wire: WireAccount = {
      balance: 39_950_000,
      equity: 49_950_000,
      margin_used: 10_000_000,
      maintenance: 500_000,
      available: 39_950_000,
      margin_ratio_bps: 100,
      unrealized_pnl: 0,
      decimal: 4,
      orders: [],
      trades: [
        {
          id: "t1",
          type: "short",
          leverage: 10,
          asset: "BTC_USDC_PERP",
          margin: 10_000_000,
          quantity: 0.1,
          openPrice: 1_000_000_000,
          mark: 1_000_000_000,
          unrealized_pnl: 0,
          liquidation_price: 1_492_039_801,
          margin_mode: "isolated",
          fees: 50_000,
          funding: 0,
        },
      ],
    };
    const a = normalizeAccount(wire);
    expect(a.trades[0]).toMatchObject({ id: "t1", side: -1, qty: 10_000_000, entry: 1_000_000_000, marginMode: "isolated" });
    expect(a.available).toBe(39_950_000);
  });
  it("normalises closed trades with liquidation flag", () => {
    const c = normalizeClosedTrade({
      id: "t9",
      openPrice: 1_000_000_000,
      closePrice: 904_000_000,
      leverage: 10,
      asset: "BTC_USDC_PERP",
      margin: 10_000_000,
      quantity: 0.1,
      type: "long",
      pnl: -9_600_000,
      decimal: 4,
      liquidated: true,
      createdAt: "2025-01-01T00:00:00Z",
    });
    expect(c.liquidated).toBe(true);
    expect(c.reason).toBe("liquidation");
    expect(c.qty).toBe(10_000_000);
    expect(c.time).toBe(1_735_689_600_000);
  });
});

describe("push events", () => {
  it("reads a liquidation with the engine's trade shape", () => {
    const n = eventNotice({
      id: "0:1-0:2",
      type: "trade_closed",
      trade: {
        id: "t1",
        market: "ETH_USDC_PERP",
        side: 1,
        qty: 100_000_000,
        entry: 35_000_000,
        leverage: 50,
        margin: 700_000,
        margin_mode: "isolated",
      },
      close_price: 34_400_000,
      closed_qty: 100_000_000,
      pnl: -600_000,
      fee: 1_720,
      reason: "liquidation",
      liquidated: true,
      remaining_qty: 0,
    });
    expect(n).toMatchObject({ kind: "liquidated", market: "ETH_USDC_PERP", side: 1, qty: 100_000_000, pnl: -600_000 });
  });
  it("reads a partial close with the REST trade shape", () => {
    const n = eventNotice({
      type: "trade_closed",
      trade: {
        id: "t2",
        type: "short",
        leverage: 5,
        asset: "SOL_USDC_PERP",
        margin: 1,
        quantity: 3,
        openPrice: 2_000_000,
      },
      closed_qty: 1,
      remaining_qty: 2,
      reason: "close",
      pnl: 5_000,
      close_price: 1_995_000,
    });
    expect(n).toMatchObject({ kind: "partial", qty: 100_000_000, side: -1, key: "close:t2" });
  });
  it("ignores events that are not fills", () => {
    expect(eventNotice({ type: "ledger", kind: "fee", amount: -5 })).toBeNull();
  });
});
