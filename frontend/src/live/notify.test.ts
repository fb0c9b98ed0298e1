import { describe, expect, it } from "vitest";
import { noticeToast } from "./notify";

describe("noticeToast", () => {
  const btc = { priceDecimals: 1, qtyDecimals: 4 };
  it("announces a liquidation with price and PnL", () => {
    const t = noticeToast(
      { key: "close:t1", kind: "liquidated", tradeId: "t1", market: "BTC_USDC_PERP", side: 1, qty: 10_000_000, price: 904_522_613, pnl: -9_547_774 },
      btc,
    );
    expect(t.tone).toBe("danger");
    expect(t.title).toBe("Position liquidated");
    expect(t.body).toBe("Long 0.1000 BTC-PERP @ 90,452.3 · PnL -$954.78");
  });
  it("announces a fill", () => {
    const t = noticeToast(
      { key: "open:t2", kind: "opened", tradeId: "t2", market: "BTC_USDC_PERP", side: -1, qty: 1_000_000, price: 971_234_567, pnl: null },
      btc,
    );
    expect(t.body).toBe("Short 0.0100 BTC-PERP opened @ 97,123.5");
    expect(t.tone).toBe("short");
  });
});
