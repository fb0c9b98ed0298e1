import { describe, expect, it } from "vitest";
import { isolatedIsLiquidatable, isolatedTriggerPrice } from "./calc";
import { checkAddMargin, checkTpsl, levelText, type EditableTrade } from "./tradeEdit";

const rules = { tickSize: 1000, priceDecimals: 1, mmrPpm: 5000 }; // BTC
const long: EditableTrade = {
  side: 1,
  qty: 10_000_000, // 0.1 BTC
  entry: 1_000_000_000, // 100,000
  margin: 10_000_000, // $1,000: 10x
  marginMode: "cross",
  takeProfit: null,
  stopLoss: null,
};
const mark = 1_000_000_000;

describe("isolatedTriggerPrice (margin.isolated_trigger_price)", () => {
  it("agrees with the engine to the last unit", () => {
    // reference values from opex_common.margin.isolated_trigger_price
    expect(isolatedTriggerPrice(1, 10_000_000, 1_000_000_000, 10_000_000, 5000)).toBe(904_522_629);
    expect(isolatedTriggerPrice(-1, 10_000_000, 1_000_000_000, 10_000_000, 5000)).toBe(1_094_527_351);
    expect(isolatedTriggerPrice(1, 1_000_000, 970_010_000, 194_002, 5000)).toBe(955_386_899);
    expect(isolatedTriggerPrice(1, 1_000_000, 970_010_000, 1_194_002, 5000)).toBe(854_884_399);
    expect(isolatedTriggerPrice(-1, 333_000_000, 2_000_000, 1_234_567, 5000)).toBe(2_358_946);
    // margin above the notional: no positive mark liquidates a long
    expect(isolatedTriggerPrice(1, 1_000_000, 970_010_000, 20_000_000, 5000)).toBe(0);
  });
  it("is the first liquidatable mark", () => {
    const liq = isolatedTriggerPrice(1, 10_000_000, 1_000_000_000, 10_000_000, 5000);
    expect(isolatedIsLiquidatable(1, 10_000_000, 1_000_000_000, 10_000_000, liq, 5000)).toBe(true);
    expect(isolatedIsLiquidatable(1, 10_000_000, 1_000_000_000, 10_000_000, liq + 1, 5000)).toBe(false);
  });
});

describe("checkTpsl", () => {
  it("sends only what changes; empty text removes a level", () => {
    expect(checkTpsl(long, "110000", "95000", rules, mark).body).toEqual({ take_profit: 1_100_000_000, stop_loss: 950_000_000 });
    const withBoth = { ...long, takeProfit: 1_100_000_000, stopLoss: 950_000_000 };
    expect(checkTpsl(withBoth, "110000", "", rules, mark).body).toEqual({ stop_loss: null });
    expect(checkTpsl(withBoth, "120000", "95000", rules, mark).body).toEqual({ take_profit: 1_200_000_000 });
    expect(checkTpsl(withBoth, "110000", "95000", rules, mark)).toEqual({ errors: { form: "Nothing to change." }, body: null });
  });
  it("refuses levels on the wrong side of the entry, off the tick, or already reached", () => {
    expect(checkTpsl(long, "99000", "", rules, mark).errors.tp).toMatch(/above the entry/);
    expect(checkTpsl(long, "", "101000", rules, mark).errors.sl).toMatch(/below the entry/);
    expect(checkTpsl({ ...long, side: -1 }, "101000", "", rules, mark).errors.tp).toMatch(/below the entry/);
    expect(checkTpsl(long, "110000.05", "", rules, mark).errors.tp).toBe("Use steps of 0.1.");
    expect(checkTpsl(long, "abc", "", rules, mark).errors.tp).toBeDefined();
    // the mark already rose past a take-profit above the entry
    expect(checkTpsl(long, "105000", "", rules, 1_060_000_000).errors.tp).toMatch(/already past/);
    expect(checkTpsl(long, "", "95000", rules, 940_000_000).errors.sl).toMatch(/already past/);
  });
  it("refuses an isolated stop-loss beyond the liquidation price", () => {
    const iso = { ...long, marginMode: "isolated" as const };
    // liquidation at 90,452.2629: a stop at 90,452.2 would come after it
    expect(checkTpsl(iso, "", "90452.2", rules, mark).errors.sl).toBe("The stop-loss must come before the liquidation price 90,452.3.");
    expect(checkTpsl(iso, "", "90452.3", rules, mark).body).toEqual({ stop_loss: 904_523_000 });
    // cross: the liquidation depends on the whole account; the engine does not check it
    expect(checkTpsl(long, "", "90000", rules, mark).body).toEqual({ stop_loss: 900_000_000 });
  });
  it("starts the fields from the current levels", () => {
    expect(levelText(1_100_000_000, 1)).toBe("110000.0");
    expect(levelText(null, 1)).toBe("");
  });
});

describe("checkAddMargin", () => {
  const iso = { ...long, marginMode: "isolated" as const };
  it("moves the liquidation price with the added margin", () => {
    const c = checkAddMargin("1000", 50_000_000, iso, 5000);
    expect(c).toEqual({ amount: 10_000_000, error: null, liquidationPrice: isolatedTriggerPrice(1, 10_000_000, 1_000_000_000, 20_000_000, 5000) });
    expect(c.liquidationPrice).toBeLessThan(904_522_629);
  });
  it("refuses cross trades, non-positive amounts and more than the free balance", () => {
    expect(checkAddMargin("10", 50_000_000, long, 5000).error).toMatch(/isolated/);
    expect(checkAddMargin("0", 50_000_000, iso, 5000).error).toBe("Enter a positive amount.");
    expect(checkAddMargin("0.00001", 50_000_000, iso, 5000).error).toBe("Enter a positive amount.");
    expect(checkAddMargin("5000.01", 50_000_000, iso, 5000).error).toBe("More than the free balance ($5,000.00).");
    expect(checkAddMargin("", 50_000_000, iso, 5000)).toEqual({ amount: null, error: null, liquidationPrice: null });
  });
});
