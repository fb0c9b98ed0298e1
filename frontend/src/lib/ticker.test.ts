import { describe, expect, it } from "vitest";
import { liveChangeBps, spreadBps } from "./ticker";

describe("liveChangeBps", () => {
  it("keeps the API's figure at the API's mark", () => {
    expect(liveChangeBps(1_010_000_000, 100, 1_010_000_000)).toBe(100);
  });
  it("moves with the live mark from the same 24 h reference", () => {
    // +1 % at 101,000 means 100,000 a day ago; at 102,000 it is +2 %
    expect(liveChangeBps(1_010_000_000, 100, 1_020_000_000)).toBe(200);
    expect(liveChangeBps(1_010_000_000, 100, 990_000_000)).toBe(-100);
  });
  it("falls back to the API's figure without prices", () => {
    expect(liveChangeBps(null, 42, 1)).toBe(42);
    expect(liveChangeBps(1, null, 1)).toBeNull();
  });
  it("spread", () => {
    expect(spreadBps(999, 1001)).toBe(20);
    expect(spreadBps(null, 1)).toBeNull();
  });
});
