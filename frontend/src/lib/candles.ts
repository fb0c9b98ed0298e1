// Candle intervals and the live update of the last candle from pushed prices.

export const INTERVALS = ["1m", "5m", "15m", "1h", "4h", "1d"] as const;
export type Interval = (typeof INTERVALS)[number];

const SECONDS: Record<Interval, number> = {
  "1m": 60,
  "5m": 300,
  "15m": 900,
  "1h": 3600,
  "4h": 14_400,
  "1d": 86_400,
};

export function intervalSeconds(interval: Interval): number {
  return SECONDS[interval];
}

/** A candle in 4-decimal integer prices, time = bucket start in unix seconds (UTC). */
export interface Candle {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
}

/** Start of the bucket that holds `tsMs` (UTC-aligned, like the server's roll-up). */
export function bucketStart(tsMs: number, interval: Interval): number {
  const s = intervalSeconds(interval);
  return Math.floor(tsMs / 1000 / s) * s;
}

/**
 * Fold one live price into the series: extend the last candle when the price
 * falls in its bucket, start a new one when it falls in a later bucket, and
 * ignore prices older than the last candle. Returns the candle to draw.
 */
export function applyPrice(last: Candle | null, price: number, tsMs: number, interval: Interval): Candle | null {
  const t = bucketStart(tsMs, interval);
  if (last && t < last.time) return null;
  if (last && t === last.time) {
    return {
      time: t,
      open: last.open,
      high: Math.max(last.high, price),
      low: Math.min(last.low, price),
      close: price,
    };
  }
  return { time: t, open: price, high: price, low: price, close: price };
}
