import { describe, expect, it } from "vitest";
import type { Account, Trade } from "./model";
import { liveAccount, ratioBps } from "./liveAccount";

const P = 1_000_000_000; // $100,000
const mmrOf = () => 5000;

function trade(over: Partial<Trade> = {}): Trade {
  return {
    id: "t1",
    market: "BTC_USDC_PERP",
    side: 1,
    qty: 10_000_000, // 0.1 BTC
    entry: P,
    leverage: 10,
    margin: 10_000_000,
    marginMode: "cross",
    mark: P,
    unrealizedPnl: 0,
    liquidationPrice: 503_015_075,
    fees: 50_000,
    funding: 0,
    takeProfit: null,
    stopLoss: null,
    openedAt: null,
    ...over,
  };
}

function account(over: Partial<Account> = {}): Account {
  return {
    balance: 39_950_000,
    equity: 49_950_000,
    marginUsed: 10_000_000,
    maintenance: 500_000,
    available: 39_950_000,
    marginRatioBps: 100,
    unrealizedPnl: 0,
    trades: [trade()],
    orders: [],
    reserved: 0,
    marginWarning: false,
    ...over,
  };
}

describe("liveAccount", () => {
  it("moves uPnL, equity, available and margin ratio with the live mark", () => {
    const live = liveAccount(account(), { BTC_USDC_PERP: 990_000_000 }, mmrOf);
    expect(live.trades[0].pnl).toBe(-1_000_000); // 0.1 x (99,000 - 100,000) = -$100
    expect(live.trades[0].roeBps).toBe(-1000); // -10 % of margin
    expect(live.unrealizedPnl).toBe(-1_000_000);
    expect(live.equity).toBe(48_950_000);
    expect(live.available).toBe(38_950_000);
    expect(live.marginRatioBps).toBe(101); // 49.5 / 4895
    expect(live.live).toBe(true);
  });
  it("keeps the server's figures when they are not the sums it expects", () => {
    const live = liveAccount(account({ equity: 47_000_000 }), { BTC_USDC_PERP: 990_000_000 }, mmrOf);
    expect(live.equity).toBe(47_000_000);
    expect(live.live).toBe(false);
    expect(live.trades[0].pnl).toBe(-1_000_000); // per-trade PnL is still live
  });
  it("uses the server's mark until a live price arrives", () => {
    const live = liveAccount(account(), {}, mmrOf);
    expect(live.trades[0].mark).toBe(P);
    expect(live.equity).toBe(49_950_000);
    expect(live.marginRatioBps).toBe(100);
  });
  it("leaves isolated trades out of available when the server counts cross only", () => {
    const iso = trade({ id: "t2", marginMode: "isolated", side: -1 });
    const acct = account({
      trades: [trade(), iso],
      equity: 59_950_000, // balance + both trades' margin
      marginUsed: 20_000_000,
    });
    const live = liveAccount(acct, { BTC_USDC_PERP: 990_000_000 }, mmrOf);
    expect(live.unrealizedPnl).toBe(0); // -100 + 100
    expect(live.equity).toBe(59_950_000);
    expect(live.available).toBe(38_950_000);
  });
  it("ratio is capped when equity is gone", () => {
    expect(ratioBps(500_000, 0)).toBe(10_000);
    expect(ratioBps(0, 100)).toBe(0);
  });
});
