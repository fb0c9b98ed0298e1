import { describe, expect, it } from "vitest";
import {
  bpsToPpm,
  ceilDiv,
  crossLiquidationPrice,
  fee,
  floorDiv,
  initialMargin,
  isolatedLiquidationPrice,
  maintenance,
  maintenanceRatePpm,
  maxQuantity,
  notional,
  pnl,
  previewOrder,
  withinSlippage,
} from "./calc";

// Units: qty 1e-8 base, prices and USD 1e-4, rates ppm.
const BTC_001 = 1_000_000; // 0.01 BTC
const BTC_01 = 10_000_000; // 0.1 BTC
const P_100K = 1_000_000_000; // $100,000.0000
const TAKER = bpsToPpm(5); // 500 ppm
const MMR = maintenanceRatePpm(100); // 5000 ppm = 0.5 %

describe("integer division", () => {
  it("floors and ceils for every sign", () => {
    expect(floorDiv(7n, 2n)).toBe(3n);
    expect(floorDiv(-7n, 2n)).toBe(-4n);
    expect(floorDiv(7n, -2n)).toBe(-4n);
    expect(floorDiv(-7n, -2n)).toBe(3n);
    expect(ceilDiv(7n, 2n)).toBe(4n);
    expect(ceilDiv(-7n, 2n)).toBe(-3n);
    expect(ceilDiv(6n, 2n)).toBe(3n);
  });
});

describe("market constants", () => {
  it("derives mmr and fee rates like the engine", () => {
    expect(MMR).toBe(5000);
    expect(maintenanceRatePpm(50)).toBe(10_000);
    expect(TAKER).toBe(500);
    expect(bpsToPpm(2.5)).toBe(250);
  });
});

describe("margin and fee", () => {
  it("IM = q x fill / L, rounded up", () => {
    // 0.01 x 97,123.4567 / 10 = 97.12345670 -> 97.1235
    expect(initialMargin(BTC_001, 971_234_567, 10)).toBe(971_235);
    expect(initialMargin(BTC_01, P_100K, 10)).toBe(10_000_000); // $1,000 exactly
    expect(initialMargin(BTC_01, P_100K, 1)).toBe(100_000_000);
  });
  it("fee = q x fill x taker, rounded up", () => {
    // 0.01 x 97,123.4567 x 0.0005 = 0.48561728 -> 0.4857
    expect(fee(BTC_001, 971_234_567, TAKER)).toBe(4_857);
    expect(fee(BTC_01, P_100K, TAKER)).toBe(50_000); // $5
  });
  it("notional floors", () => {
    expect(notional(BTC_001, 971_234_567)).toBe(9_712_345);
  });
  it("maintenance = q x mark x mmr, rounded up", () => {
    expect(maintenance(BTC_01, P_100K, MMR)).toBe(500_000); // $50
    expect(maintenance(1, 1, MMR)).toBe(1);
  });
});

describe("unrealized PnL", () => {
  it("is s x q x (mark - entry)", () => {
    expect(pnl(1, BTC_001, 971_234_567, 981_234_567)).toBe(100_000); // +$10
    expect(pnl(-1, BTC_001, 971_234_567, 981_234_567)).toBe(-100_000);
    expect(pnl(-1, BTC_001, 981_234_567, 971_234_567)).toBe(100_000);
  });
  it("rounds toward -infinity, so the trader is never shown more than booked", () => {
    expect(pnl(1, 1, 100, 101)).toBe(0);
    expect(pnl(-1, 1, 100, 101)).toBe(-1);
  });
});

describe("isolated liquidation price", () => {
  it("long: E (1 - 1/L) / (1 - mmr)", () => {
    // 100,000 x 0.9 / 0.995 = 90,452.26130653 -> floor
    expect(isolatedLiquidationPrice(1, P_100K, 10, MMR)).toBe(904_522_613);
    expect(isolatedLiquidationPrice(1, P_100K, 1, MMR)).toBe(0);
  });
  it("short: E (1 + 1/L) / (1 + mmr)", () => {
    // 100,000 x 1.1 / 1.005 = 109,452.73631840 -> ceil
    expect(isolatedLiquidationPrice(-1, P_100K, 10, MMR)).toBe(1_094_527_364);
    // 100x: 100,000 x 1.01 / 1.005
    expect(isolatedLiquidationPrice(-1, P_100K, 100, MMR)).toBe(1_004_975_125);
  });
});

describe("cross liquidation price", () => {
  it("solves equity = maintenance for one trade", () => {
    // W = $4,995 (balance after fee + IM), long 0.1 BTC @ 100,000:
    // 4995 + 0.1 (M - 100000) = 0.0005 M -> M = 50,301.5075...
    expect(crossLiquidationPrice(1, BTC_01, P_100K, MMR, 49_950_000, 0, 0)).toBe(503_015_075);
  });
  it("short: the price rises to the liquidation", () => {
    // 4995 - 0.1 (M - 100000) = 0.0005 M -> M = 14995 / 0.1005 = 149,203.98...
    expect(crossLiquidationPrice(-1, BTC_01, P_100K, MMR, 49_950_000, 0, 0)).toBe(1_492_039_801);
  });
  it("is null when no positive price liquidates", () => {
    expect(crossLiquidationPrice(1, BTC_001, P_100K, MMR, 1_000_000_000, 0, 0)).toBeNull();
  });
});

describe("previewOrder", () => {
  const base = {
    side: 1 as const,
    qty: BTC_01,
    price: P_100K,
    leverage: 10,
    feePpm: TAKER,
    mmrPpm: MMR,
    balance: 50_000_000,
    crossTrades: [],
  };
  it("isolated: margin, fee and the textbook liquidation price", () => {
    const p = previewOrder({ ...base, marginMode: "isolated" });
    expect(p.initialMargin).toBe(10_000_000);
    expect(p.fee).toBe(50_000);
    expect(p.cost).toBe(10_050_000);
    expect(p.notional).toBe(100_000_000);
    expect(p.liquidationPrice).toBe(904_522_613);
  });
  it("cross: the whole balance backs the trade", () => {
    const p = previewOrder({ ...base, marginMode: "cross" });
    expect(p.liquidationPrice).toBe(503_015_075);
  });
  it("cross: other cross trades' uPnL and maintenance move the price", () => {
    // another long 0.1 BTC @ 100,000 now marked at 100,000: IM $1,000, u 0, MM $50
    const other = { side: 1 as const, qty: BTC_01, entry: P_100K, margin: 10_000_000, mark: P_100K, mmrPpm: MMR };
    const p = previewOrder({ ...base, marginMode: "cross", balance: 39_950_000, crossTrades: [other] });
    // W = 3995 - 5 + 1000 = 4990; 4990 + 0 - 50 + 0.1(M - 100000) = 0.0005 M
    // -> M = (10000 - 4940) / 0.0995 = 50,854.2713...
    expect(p.liquidationPrice).toBe(508_542_713);
  });
});

describe("maxQuantity", () => {
  it("is the largest step multiple whose margin + fee fit", () => {
    // 5000 / (100000 x (0.1 + 0.0005)) = 0.49751... -> 0.4975 BTC
    const q = maxQuantity(50_000_000, P_100K, 10, TAKER, 10_000);
    expect(q).toBe(49_750_000);
    expect(initialMargin(q, P_100K, 10) + fee(q, P_100K, TAKER)).toBeLessThanOrEqual(50_000_000);
    const next = q + 10_000;
    expect(initialMargin(next, P_100K, 10) + fee(next, P_100K, TAKER)).toBeGreaterThan(50_000_000);
  });
  it("is zero with nothing available", () => {
    expect(maxQuantity(0, P_100K, 10, TAKER, 10_000)).toBe(0);
  });
});

describe("slippage", () => {
  it("accepts fills within the bps the trader allowed", () => {
    expect(withinSlippage(P_100K, 1_005_000_000, 50)).toBe(true);
    expect(withinSlippage(P_100K, 1_005_100_000, 50)).toBe(false);
    expect(withinSlippage(P_100K, 995_000_000, 50)).toBe(true);
  });
});
