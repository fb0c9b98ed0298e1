import { describe, expect, it } from "vitest";
import { decimalsOfStep, formatUnits, parseUnits, qtyToUnits, unitsToQtyNumber } from "./fixed";

describe("parseUnits", () => {
  it("converts decimal text exactly", () => {
    expect(parseUnits("0.1", 4)).toBe(1000n);
    expect(parseUnits("97123.4567", 4)).toBe(971234567n);
    expect(parseUnits("-12.5", 4)).toBe(-125000n);
    expect(parseUnits(".5", 4)).toBe(5000n);
    expect(parseUnits("5.", 4)).toBe(50000n);
    expect(parseUnits("  2 ", 4)).toBe(20000n);
    expect(parseUnits("007.10", 4)).toBe(71000n);
  });
  it("reads exponent notation, as String(number) produces it", () => {
    expect(parseUnits("1e-4", 8)).toBe(10000n);
    expect(parseUnits("1e-7", 8)).toBe(10n);
    expect(parseUnits("1.5e3", 4)).toBe(15000000n);
  });
  it("refuses what is not a number or not exact", () => {
    expect(parseUnits("0.00001", 4)).toBeNull();
    expect(parseUnits("abc", 4)).toBeNull();
    expect(parseUnits("", 4)).toBeNull();
    expect(parseUnits(".", 4)).toBeNull();
    expect(parseUnits("1,000", 4)).toBeNull();
    expect(parseUnits("1.2.3", 4)).toBeNull();
  });
});

describe("quantities", () => {
  it("turns JSON numbers of base units into 1e-8 units without float error", () => {
    expect(qtyToUnits(0.1)).toBe(10_000_000);
    expect(qtyToUnits(0.3)).toBe(30_000_000);
    expect(qtyToUnits(1e-7)).toBe(10);
    expect(qtyToUnits(12.34)).toBe(1_234_000_000);
    expect(qtyToUnits(1e-9)).toBeNull();
  });
  it("turns units back into the number the API expects", () => {
    expect(unitsToQtyNumber(10_000)).toBe(0.0001);
    expect(unitsToQtyNumber(30_000_000)).toBe(0.3);
    expect(unitsToQtyNumber(12_345_678_900)).toBe(123.456789);
    expect(JSON.stringify({ quantity: unitsToQtyNumber(70_000) })).toBe('{"quantity":0.0007}');
  });
});

describe("formatUnits", () => {
  it("divides by the scale and rounds half away from zero", () => {
    expect(formatUnits(971234567, 4, 1)).toBe("97,123.5");
    expect(formatUnits(971234567, 4, 2)).toBe("97,123.46");
    expect(formatUnits(971234567, 4, 4)).toBe("97,123.4567");
    expect(formatUnits(-50, 4, 2)).toBe("-0.01");
    expect(formatUnits(-49, 4, 2)).toBe("0.00");
    expect(formatUnits(15000, 4, 0)).toBe("2");
  });
  it("pads when showing more decimals than the scale holds", () => {
    expect(formatUnits(5, 0, 2)).toBe("5.00");
    expect(formatUnits(1, 4, 6)).toBe("0.000100");
  });
  it("groups thousands and signs gains on request", () => {
    expect(formatUnits(50_000_000, 4, 2, { plus: true })).toBe("+5,000.00");
    expect(formatUnits(12_345_678_900_000, 4, 2, { group: false })).toBe("1234567890.00");
    expect(formatUnits(0, 4, 2, { plus: true })).toBe("0.00");
  });
  it("accepts bigint", () => {
    expect(formatUnits(10n ** 20n, 4, 0)).toBe("10,000,000,000,000,000");
  });
});

describe("decimalsOfStep", () => {
  it("derives display decimals from tick size and quantity step", () => {
    expect(decimalsOfStep(1000, 4)).toBe(1); // BTC tick 0.1
    expect(decimalsOfStep(100, 4)).toBe(2); // ETH/SOL tick 0.01
    expect(decimalsOfStep(10_000, 8)).toBe(4); // BTC step 0.0001
    expect(decimalsOfStep(100_000, 8)).toBe(3); // ETH step 0.001
    expect(decimalsOfStep(1_000_000, 8)).toBe(2); // SOL step 0.01
    expect(decimalsOfStep(10_000, 4)).toBe(0);
    expect(decimalsOfStep(1, 4)).toBe(4);
  });
});
