// Small hooks that join REST data with live prices.

import { useEffect, useMemo, useState } from "react";
import { useMarkets } from "./api/queries";
import type { Market } from "./lib/model";
import { liveChangeBps } from "./lib/ticker";
import { useLive, type LivePrice } from "./live/store";

export interface MarketView extends Market {
  /** 24 h change with the live mark */
  changeLiveBps: number | null;
  live: boolean;
}

/** A market's REST snapshot with the latest pushed bid/ask/mark on top. */
export function mergeMarket(m: Market, p: LivePrice | undefined): MarketView {
  if (!p) return { ...m, changeLiveBps: m.change24hBps, live: false };
  return {
    ...m,
    bid: p.bid ?? m.bid,
    ask: p.ask ?? m.ask,
    mark: p.mark ?? m.mark,
    index: p.index ?? m.index,
    fundingRate: p.fundingRate ?? m.fundingRate,
    changeLiveBps: liveChangeBps(m.mark, m.change24hBps, p.mark ?? m.mark),
    live: true,
  };
}

export function useMarketViews(enabled = true): { markets: MarketView[]; isLoading: boolean; error: unknown } {
  const q = useMarkets(enabled);
  const prices = useLive((s) => s.prices);
  const markets = useMemo(() => (q.data ?? []).map((m) => mergeMarket(m, prices[m.symbol])), [q.data, prices]);
  return { markets, isLoading: q.isLoading, error: q.error };
}

/** Re-render every `ms` (countdowns). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}
