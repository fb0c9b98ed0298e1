import { describe, expect, it } from "vitest";
import { applyPrice, bucketStart } from "./candles";

const T0 = 1_700_000_040; // unix s, a minute boundary
describe("live candles", () => {
  it("aligns buckets to UTC interval starts", () => {
    expect(bucketStart(T0 * 1000 + 59_000, "1m")).toBe(T0);
    expect(bucketStart(T0 * 1000 + 60_000, "1m")).toBe(T0 + 60);
    expect(bucketStart(Date.UTC(2025, 0, 1, 13, 5) , "1d")).toBe(Date.UTC(2025, 0, 1) / 1000);
    expect(bucketStart(Date.UTC(2025, 0, 1, 13, 5), "4h")).toBe(Date.UTC(2025, 0, 1, 12) / 1000);
  });
  it("extends the last candle within its bucket", () => {
    const last = { time: T0, open: 100, high: 110, low: 95, close: 105 };
    expect(applyPrice(last, 120, T0 * 1000 + 5000, "1m")).toEqual({ time: T0, open: 100, high: 120, low: 95, close: 120 });
    expect(applyPrice(last, 90, T0 * 1000 + 5000, "1m")).toEqual({ time: T0, open: 100, high: 110, low: 90, close: 90 });
  });
  it("starts a new candle in a new bucket and ignores old prices", () => {
    const last = { time: T0, open: 100, high: 110, low: 95, close: 105 };
    expect(applyPrice(last, 107, (T0 + 61) * 1000, "1m")).toEqual({ time: T0 + 60, open: 107, high: 107, low: 107, close: 107 });
    expect(applyPrice(last, 107, (T0 - 1) * 1000, "1m")).toBeNull();
  });
});
