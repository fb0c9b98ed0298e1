// Fixed-point helpers. The API sends prices and USD amounts as integers with
// 4 implied decimals and quantities as JSON numbers of base units; inside the
// app a quantity is an integer of 1e-8 base units (the engine's unit). Text is
// converted with exact decimal arithmetic, never `parseFloat(x) * scale`.

export const USD_DECIMALS = 4;
export const PRICE_DECIMALS = 4;
export const QTY_DECIMALS = 8;

const DECIMAL_RE = /^([+-])?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

/**
 * Parse decimal text ("0.1", "97,123.45" is refused, "1e-4" is accepted) into
 * an integer of 10^-decimals. Returns null when the text is not a number or
 * has more decimals than the unit can hold (no silent rounding).
 */
export function parseUnits(text: string, decimals: number): bigint | null {
  const m = DECIMAL_RE.exec(text.trim());
  if (!m) return null;
  const [, sign, intPart = "", fracPart = "", expPart] = m;
  if (intPart === "" && fracPart === "") return null;
  const digits = BigInt((intPart + fracPart).replace(/^0+(?=\d)/, "") || "0");
  const shift = decimals - fracPart.length + (expPart ? Number(expPart) : 0);
  let units: bigint;
  if (shift >= 0) {
    units = digits * pow10(shift);
  } else {
    const div = pow10(-shift);
    if (digits % div !== 0n) return null;
    units = digits / div;
  }
  return sign === "-" ? -units : units;
}

/** A JSON number or decimal string of base units -> integer 1e-8 units (null if not exact). */
export function qtyToUnits(value: number | string): number | null {
  const u = parseUnits(String(value), QTY_DECIMALS);
  return u === null ? null : Number(u);
}

/** Integer 1e-8 units -> the JSON number the API expects (0.1, not 0.10000000000000001). */
export function unitsToQtyNumber(units: number): number {
  return Number(formatUnits(units, QTY_DECIMALS, QTY_DECIMALS, { group: false }));
}

/** Exact integer conversion of a value the API sent as an integer (tolerates 1.0). */
export function toBig(value: number | bigint): bigint {
  if (typeof value === "bigint") return value;
  if (!Number.isFinite(value)) return 0n;
  return BigInt(Number.isInteger(value) ? value : Math.round(value));
}

/** Number of significant decimals of a step given in 10^-scale units (1000 @4 -> 1). */
export function decimalsOfStep(stepUnits: number | bigint, scale: number): number {
  let s = toBig(stepUnits);
  if (s <= 0n) return scale;
  let d = scale;
  while (d > 0 && s % 10n === 0n) {
    s /= 10n;
    d -= 1;
  }
  return d;
}

export interface FormatOptions {
  /** thousands separators (default true) */
  group?: boolean;
  /** "+" in front of positive values */
  plus?: boolean;
}

/**
 * Format an integer of 10^-scale units with `display` decimals, rounding half
 * away from zero. formatUnits(971234567, 4, 1) === "97,123.5".
 */
export function formatUnits(
  value: number | bigint,
  scale: number,
  display: number,
  opts: FormatOptions = {},
): string {
  const group = opts.group ?? true;
  const v = toBig(value);
  const neg = v < 0n;
  const a = neg ? -v : v;
  let q: bigint;
  if (display < scale) {
    const div = pow10(scale - display);
    q = a / div;
    if ((a % div) * 2n >= div) q += 1n;
  } else {
    q = a * pow10(display - scale);
  }
  const s = q.toString().padStart(display + 1, "0");
  let intPart = display > 0 ? s.slice(0, s.length - display) : s;
  const frac = display > 0 ? s.slice(s.length - display) : "";
  if (group) intPart = intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const sign = q === 0n ? "" : neg ? "-" : opts.plus ? "+" : "";
  return sign + intPart + (frac ? "." + frac : "");
}
