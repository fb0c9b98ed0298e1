// Hash routing (#/trade, #/history, ...): deep links and reloads work from any
// static host (local stack, S3 + CloudFront) with no rewrite rules.

import { useSyncExternalStore } from "react";

export type Route =
  | { name: "landing" }
  | { name: "signin" }
  | { name: "signup" }
  | { name: "trade"; symbol: string | null }
  | { name: "history"; tab: "trades" | "ledger" }
  | { name: "notfound" };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "").replace(/\/+$/, "") || "/";
  const parts = path.split("/").filter(Boolean);
  switch (parts[0]) {
    case undefined:
      return { name: "landing" };
    case "signin":
      return { name: "signin" };
    case "signup":
      return { name: "signup" };
    case "trade":
      return { name: "trade", symbol: parts[1] ? decodeURIComponent(parts[1]) : null };
    case "history":
      return { name: "history", tab: parts[1] === "ledger" ? "ledger" : "trades" };
    default:
      return { name: "notfound" };
  }
}

function subscribe(cb: () => void): () => void {
  window.addEventListener("hashchange", cb);
  return () => window.removeEventListener("hashchange", cb);
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribe, () => window.location.hash);
  return parseRoute(hash);
}

export function navigate(path: string, opts: { replace?: boolean } = {}): void {
  const hash = "#" + path;
  if (window.location.hash === hash) return;
  if (opts.replace) window.location.replace(hash);
  else window.location.hash = hash;
}

export const href = (path: string): string => "#" + path;
