import { describe, expect, it } from "vitest";
import {
  formatBps,
  formatCountdown,
  formatFundingRate,
  formatPrice,
  formatQty,
  formatUsd,
  shortSymbol,
  toMillis,
} from "./format";

describe("formatUsd", () => {
  it("shows 4-decimal ints as dollars", () => {
    expect(formatUsd(50_000_000)).toBe("$5,000.00");
    expect(formatUsd(-123_456)).toBe("-$12.35");
    expect(formatUsd(123_456, { plus: true })).toBe("+$12.35");
    expect(formatUsd(123_456, { decimals: 4 })).toBe("$12.3456");
    expect(formatUsd(0, { plus: true })).toBe("$0.00");
    expect(formatUsd(null)).toBe("—");
  });
});

describe("per-market formatting", () => {
  const btc = { priceDecimals: 1, qtyDecimals: 4 };
  const sol = { priceDecimals: 2, qtyDecimals: 2 };
  it("prices use the tick's decimals", () => {
    expect(formatPrice(971_234_567, btc)).toBe("97,123.5");
    expect(formatPrice(2_345_678, sol)).toBe("234.57");
    expect(formatPrice(undefined, sol)).toBe("—");
  });
  it("quantities use the step's decimals", () => {
    expect(formatQty(10_000, btc)).toBe("0.0001");
    expect(formatQty(1_250_000_000, sol)).toBe("12.50");
  });
});

describe("small formats", () => {
  it("basis points as signed percent", () => {
    expect(formatBps(125)).toBe("+1.25%");
    expect(formatBps(-3)).toBe("-0.03%");
    expect(formatBps(0)).toBe("0.00%");
    expect(formatBps(null)).toBe("—");
  });
  it("funding rate from decimal text", () => {
    expect(formatFundingRate("0.0000125")).toBe("+0.0013%");
    expect(formatFundingRate("-0.0001")).toBe("-0.0100%");
    expect(formatFundingRate(null)).toBe("—");
  });
  it("symbols and time", () => {
    expect(shortSymbol("BTC_USDC_PERP")).toBe("BTC-PERP");
    expect(toMillis(1_700_000_000)).toBe(1_700_000_000_000);
    expect(toMillis(1_700_000_000_000)).toBe(1_700_000_000_000);
    expect(toMillis("1700000000000")).toBe(1_700_000_000_000);
    expect(toMillis("2025-01-01T00:00:00Z")).toBe(1_735_689_600_000);
    expect(formatCountdown(3_725_000, 0)).toBe("01:02:05");
  });
});
