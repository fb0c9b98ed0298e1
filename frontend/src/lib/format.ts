// Display formatting. Every amount the API sends with "decimal": 4 is divided
// by 10^4 here and nowhere else; price decimals come from the market's tick
// size and quantity decimals from its quantity step.

import { formatUnits, PRICE_DECIMALS, QTY_DECIMALS, USD_DECIMALS } from "./fixed";

export interface MarketFormat {
  priceDecimals: number;
  qtyDecimals: number;
}

const MINUS = "-";

/** USD amount (4-decimal int) -> "$5,000.00"; `plus` adds "+" to gains (PnL). */
export function formatUsd(amount: number | null | undefined, opts: { plus?: boolean; decimals?: number } = {}): string {
  if (amount === null || amount === undefined || !Number.isFinite(amount)) return "—";
  const text = formatUnits(amount, USD_DECIMALS, opts.decimals ?? 2, { plus: opts.plus });
  if (text.startsWith("-")) return MINUS + "$" + text.slice(1);
  if (text.startsWith("+")) return "+$" + text.slice(1);
  return "$" + text;
}

/** Price (4-decimal int) with the market's tick decimals: 971234567 -> "97,123.5" for BTC. */
export function formatPrice(price: number | null | undefined, fmt: Pick<MarketFormat, "priceDecimals">): string {
  if (price === null || price === undefined || !Number.isFinite(price)) return "—";
  return formatUnits(price, PRICE_DECIMALS, fmt.priceDecimals);
}

/** Quantity in 1e-8 units with the market's step decimals: 10000 -> "0.0001". */
export function formatQty(units: number | null | undefined, fmt: Pick<MarketFormat, "qtyDecimals">): string {
  if (units === null || units === undefined || !Number.isFinite(units)) return "—";
  return formatUnits(units, QTY_DECIMALS, fmt.qtyDecimals);
}

/** Basis points -> signed percent: 125 -> "+1.25%". */
export function formatBps(bps: number | null | undefined, opts: { plus?: boolean; decimals?: number } = {}): string {
  if (bps === null || bps === undefined || !Number.isFinite(bps)) return "—";
  return formatUnits(Math.round(bps), 2, opts.decimals ?? 2, { plus: opts.plus ?? true, group: true }) + "%";
}

/** Funding rate as the API's decimal string ("0.0000125") -> "0.0013%". */
export function formatFundingRate(rate: string | null | undefined): string {
  if (rate === null || rate === undefined || rate === "") return "—";
  const n = Number(rate);
  if (!Number.isFinite(n)) return "—";
  const pct = n * 100;
  return (pct > 0 ? "+" : "") + pct.toFixed(4) + "%";
}

/** Market symbol -> short display name: BTC_USDC_PERP -> "BTC-PERP". */
export function shortSymbol(symbol: string): string {
  const base = symbol.split("_")[0] ?? symbol;
  return symbol.endsWith("_PERP") ? `${base}-PERP` : symbol;
}

export function baseAsset(symbol: string): string {
  return symbol.split("_")[0] ?? symbol;
}

/**
 * Timestamps arrive as ms, s or ISO text depending on the endpoint; this turns
 * any of them into ms since the epoch (NaN if unreadable).
 */
export function toMillis(value: number | string | null | undefined): number {
  if (value === null || value === undefined || value === "") return NaN;
  if (typeof value === "number") return value < 1e11 ? value * 1000 : value;
  if (/^\d+(\.\d+)?$/.test(value)) return toMillis(Number(value));
  return Date.parse(value);
}

function pad(n: number): string {
  return n < 10 ? "0" + n : String(n);
}

/** Local date and time: "2025-11-25 09:14:03". */
export function formatDateTime(value: number | string | null | undefined): string {
  const ms = toMillis(value);
  if (!Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "in 42m" style countdown for the next funding time. */
export function formatCountdown(targetMs: number, nowMs: number): string {
  if (!Number.isFinite(targetMs) || targetMs <= 0) return "—";
  let s = Math.max(0, Math.round((targetMs - nowMs) / 1000));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${pad(h)}:${pad(m)}:${pad(s)}`;
}
