// The market picker's 24 h change, kept live between /markets refreshes.

/**
 * /markets gives change_24h_bps at its own mark; the price 24 h ago is
 * mark / (1 + change). With a newer live mark the change is
 * live / then - 1. Returns bps (display only, so floats are fine here).
 */
export function liveChangeBps(restMark: number | null, restChangeBps: number | null, liveMark: number | null): number | null {
  if (restChangeBps === null) return null;
  if (restMark === null || liveMark === null || restMark <= 0) return restChangeBps;
  const then = restMark / (1 + restChangeBps / 10_000);
  if (!(then > 0)) return restChangeBps;
  return Math.round((liveMark / then - 1) * 10_000);
}

/** bid/ask spread in bps of the mid. */
export function spreadBps(bid: number | null, ask: number | null): number | null {
  if (bid === null || ask === null || bid <= 0 || ask <= 0) return null;
  const mid = (bid + ask) / 2;
  return Math.round(((ask - bid) / mid) * 10_000 * 100) / 100;
}
