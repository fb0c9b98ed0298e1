import { describe, expect, it } from "vitest";
import { checkOrder, parseSlippageBps, type OrderContext, type OrderDraft } from "./orderForm";

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
const ctx: OrderContext = { market: btc, balance: 50_000_000, available: 50_000_000, crossTrades: [] };
const draft: OrderDraft = {
  side: 1,
  orderType: "market",
  qtyText: "0.1",
  leverage: 10,
  marginMode: "isolated",
  slippageText: "0.5",
  limitPriceText: "",
  tpText: "",
  slText: "",
};

describe("slippage", () => {
  it("reads percent into bps", () => {
    expect(parseSlippageBps("0.5")).toBe(50);
    expect(parseSlippageBps("1")).toBe(100);
    expect(parseSlippageBps("0.005")).toBeNull();
    expect(parseSlippageBps("101")).toBeNull();
  });
});

describe("checkOrder", () => {
  it("prices a long at the ask and shows margin, fee and liquidation price", () => {
    const c = checkOrder(draft, ctx);
    expect(c.errors).toEqual({});
    expect(c.price).toBe(1_000_000_000);
    expect(c.preview).toMatchObject({ initialMargin: 10_000_000, fee: 50_000, liquidationPrice: 904_522_613 });
    expect(c.body).toEqual({
      asset: "BTC_USDC_PERP",
      type: "long",
      quantity: 0.1,
      leverage: 10,
      slippage: 50,
      openPrice: 1_000_000_000,
      decimal: 4,
      margin_mode: "isolated",
    });
  });
  it("prices a short at the bid", () => {
    const c = checkOrder({ ...draft, side: -1 }, ctx);
    expect(c.price).toBe(999_990_000);
    expect(c.body?.type).toBe("short");
    expect(c.body?.openPrice).toBe(999_990_000);
  });
  it("refuses quantities off the step", () => {
    expect(checkOrder({ ...draft, qtyText: "0.00005" }, ctx).errors.qty).toBe("Use steps of 0.0001.");
    expect(checkOrder({ ...draft, qtyText: "-1" }, ctx).errors.qty).toBeDefined();
    expect(checkOrder({ ...draft, qtyText: "abc" }, ctx).body).toBeNull();
  });
  it("refuses orders the available margin cannot carry", () => {
    const c = checkOrder({ ...draft, qtyText: "0.5" }, ctx);
    expect(c.errors.funds).toBeDefined();
    expect(c.body).toBeNull();
    expect(c.maxQty).toBe(49_750_000);
  });
  it("checks leverage bounds", () => {
    expect(checkOrder({ ...draft, leverage: 101 }, ctx).errors.leverage).toBeDefined();
    expect(checkOrder({ ...draft, leverage: 0 }, ctx).errors.leverage).toBeDefined();
  });
  it("checks TP/SL sides and ticks, and sends them as 4-decimal ints", () => {
    expect(checkOrder({ ...draft, tpText: "99000" }, ctx).errors.tp).toMatch(/above/);
    expect(checkOrder({ ...draft, slText: "101000" }, ctx).errors.sl).toMatch(/below/);
    expect(checkOrder({ ...draft, tpText: "110000.05" }, ctx).errors.tp).toBe("Use steps of 0.1.");
    const ok = checkOrder({ ...draft, tpText: "110000", slText: "95000.5" }, ctx);
    expect(ok.body).toMatchObject({ take_profit: 1_100_000_000, stop_loss: 950_005_000 });
    const short = checkOrder({ ...draft, side: -1, tpText: "90000", slText: "105000" }, ctx);
    expect(short.errors).toEqual({});
  });
  it("warns when the stop is past the liquidation price", () => {
    const c = checkOrder({ ...draft, slText: "90000" }, ctx);
    expect(c.warnings).toHaveLength(1);
    expect(c.body).not.toBeNull();
  });
  it("uses the cross formula with the account's balance", () => {
    const c = checkOrder({ ...draft, marginMode: "cross" }, ctx);
    expect(c.preview?.liquidationPrice).toBe(503_015_075);
  });
  it("needs a price", () => {
    const c = checkOrder(draft, { ...ctx, market: { ...btc, ask: null } });
    expect(c.errors.price).toBeDefined();
    expect(c.body).toBeNull();
  });
});
