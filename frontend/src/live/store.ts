// Live data from the WebSocket: prices per market and the connection state.
// Kept out of TanStack Query because it changes several times a second.

import { create } from "zustand";
import type { WireLivePrice } from "../api/types";
import { rescale } from "../lib/model";

export interface LivePrice {
  bid: number | null;
  ask: number | null;
  mark: number | null;
  index: number | null;
  fundingRate: string | null;
  ts: number; // ms
}

export type ConnStatus = "idle" | "connecting" | "connected" | "reconnecting";

interface LiveState {
  status: ConnStatus;
  /** when the next reconnect attempt runs (ms epoch), while reconnecting */
  retryAt: number | null;
  prices: Record<string, LivePrice>;
  setStatus: (status: ConnStatus, retryAt?: number | null) => void;
  applyPrices: (prices: Record<string, WireLivePrice>, decimal?: number) => void;
  reset: () => void;
}

export const useLive = create<LiveState>((set) => ({
  status: "idle",
  retryAt: null,
  prices: {},
  setStatus: (status, retryAt = null) => set({ status, retryAt }),
  applyPrices: (incoming, decimal) =>
    set((s) => {
      const next = { ...s.prices };
      const now = Date.now();
      for (const [symbol, p] of Object.entries(incoming)) {
        const prev = next[symbol];
        next[symbol] = {
          bid: rescale(p.bid, decimal) ?? prev?.bid ?? null,
          ask: rescale(p.ask, decimal) ?? prev?.ask ?? null,
          mark: rescale(p.mark, decimal) ?? prev?.mark ?? null,
          index: rescale(p.index, decimal) ?? prev?.index ?? null,
          fundingRate: p.funding_rate ?? prev?.fundingRate ?? null,
          ts: typeof p.ts === "number" ? p.ts : now,
        };
      }
      return { prices: next };
    }),
  reset: () => set({ status: "idle", retryAt: null, prices: {} }),
}));

/** Live marks by market (for liveAccount). */
export function selectMarks(s: LiveState): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const [k, v] of Object.entries(s.prices)) out[k] = v.mark;
  return out;
}
