import { describe, expect, it } from "vitest";
import { parseRoute } from "./router";

describe("parseRoute", () => {
  it("maps hashes to pages", () => {
    expect(parseRoute("")).toEqual({ name: "landing" });
    expect(parseRoute("#/")).toEqual({ name: "landing" });
    expect(parseRoute("#/signin")).toEqual({ name: "signin" });
    expect(parseRoute("#/trade")).toEqual({ name: "trade", symbol: null });
    expect(parseRoute("#/trade/ETH_USDC_PERP")).toEqual({ name: "trade", symbol: "ETH_USDC_PERP" });
    expect(parseRoute("#/history/ledger")).toEqual({ name: "history", tab: "ledger" });
    expect(parseRoute("#/nope")).toEqual({ name: "notfound" });
  });
});
