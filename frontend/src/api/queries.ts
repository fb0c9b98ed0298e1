// TanStack Query hooks. Query data is stored already normalised (lib/model),
// so the WebSocket `account` push can replace it with setQueryData as is.

import { useInfiniteQuery, useQuery, type QueryClient } from "@tanstack/react-query";
import { ApiError } from "./client";
import { api } from "./endpoints";
import type { WireUser } from "./types";
import type { Interval } from "../lib/candles";
import {
  normalizeAccount,
  normalizeClosedTrade,
  normalizeLedgerEntry,
  normalizeMarket,
  rescale,
  type Account,
  type Market,
} from "../lib/model";
import type { Candle } from "../lib/candles";

export const keys = {
  whoami: ["whoami"] as const,
  config: ["config"] as const,
  markets: ["markets"] as const,
  account: ["account"] as const,
  candles: (symbol: string, interval: string) => ["candles", symbol, interval] as const,
  closed: ["trades", "closed"] as const,
  ledger: ["ledger"] as const,
};

export function useWhoami() {
  return useQuery({
    queryKey: keys.whoami,
    queryFn: async (): Promise<WireUser | null> => {
      try {
        return (await api.whoami()).user;
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return null;
        throw err;
      }
    },
    staleTime: 60_000,
    retry: 1,
  });
}

export function useConfig() {
  return useQuery({ queryKey: keys.config, queryFn: api.config, staleTime: Infinity });
}

export function useMarkets(enabled = true) {
  return useQuery({
    queryKey: keys.markets,
    queryFn: async (): Promise<Market[]> => (await api.markets()).markets.map(normalizeMarket),
    // the 24 h change and funding schedule come from here; live prices from the socket
    refetchInterval: (q) => (q.state.status === "error" ? false : 30_000),
    staleTime: 10_000,
    enabled,
  });
}

export function useAccount(enabled = true) {
  return useQuery({
    queryKey: keys.account,
    queryFn: async (): Promise<Account> => normalizeAccount((await api.account()).account),
    staleTime: 5_000,
    enabled,
  });
}

export function useCandles(symbol: string, interval: Interval, limit = 500) {
  return useQuery({
    queryKey: keys.candles(symbol, interval),
    queryFn: async (): Promise<Candle[]> => {
      const r = await api.candles(symbol, interval, limit);
      return r.candles.map((c) => ({
        time: c.time,
        open: rescale(c.open, r.decimal) ?? 0,
        high: rescale(c.high, r.decimal) ?? 0,
        low: rescale(c.low, r.decimal) ?? 0,
        close: rescale(c.close, r.decimal) ?? 0,
      }));
    },
    staleTime: 60_000,
  });
}

export function useClosedTrades() {
  return useQuery({
    queryKey: keys.closed,
    queryFn: async () => (await api.closedTrades()).trades.map(normalizeClosedTrade),
  });
}

const LEDGER_PAGE = 50;

export function useLedger() {
  return useInfiniteQuery({
    queryKey: keys.ledger,
    initialPageParam: null as string | number | null,
    queryFn: async ({ pageParam }) => {
      const page = await api.ledger(LEDGER_PAGE, pageParam);
      return { entries: page.entries.map((e) => normalizeLedgerEntry(e, page.decimal)), next: page.next ?? null };
    },
    getNextPageParam: (last) => (last.next === null || last.next === "" ? undefined : last.next),
  });
}

/** After a fill, a close or a reconnect: history may have changed. */
export function invalidateHistory(qc: QueryClient): void {
  void qc.invalidateQueries({ queryKey: keys.closed });
  void qc.invalidateQueries({ queryKey: keys.ledger });
}
