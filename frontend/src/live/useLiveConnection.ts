// Wires the WebSocket into the app while a user is signed in: prices go to the
// live store, `account` pushes replace the account query's data as pushed (no
// refetch), fills and liquidations raise toasts, and a resumed connection
// refetches whatever a missed push could have changed.

import { useEffect, useRef } from "react";
import { useQueryClient, type QueryClient } from "@tanstack/react-query";
import { ApiError } from "../api/client";
import { api } from "../api/endpoints";
import { invalidateHistory, keys } from "../api/queries";
import type { ServerMessage } from "../api/types";
import { eventNotices, normalizeAccount, type Market } from "../lib/model";
import { marginToast, noticeToast } from "./notify";
import { LiveSocket } from "./socket";
import { useLive } from "./store";
import { toast } from "./toasts";

function handleMessage(qc: QueryClient, msg: ServerMessage): void {
  switch (msg.type) {
    case "prices":
      useLive.getState().applyPrices(msg.prices ?? {}, msg.decimal);
      break;
    case "account": {
      if (msg.account) qc.setQueryData(keys.account, normalizeAccount(msg.account));
      const events = msg.events ?? [];
      if (events.length === 0) break;
      const markets = qc.getQueryData<Market[]>(keys.markets) ?? [];
      let historyChanged = false;
      for (const ev of events) {
        if (ev.type === "trade_closed" || ev.type === "ledger") historyChanged = true;
        const margin = marginToast(ev.type, ev.margin_ratio_bps);
        if (margin) toast(margin);
      }
      for (const notice of eventNotices(events)) {
        const m = markets.find((x) => x.symbol === notice.market);
        toast(noticeToast(notice, m));
      }
      if (historyChanged) invalidateHistory(qc);
      break;
    }
    case "error":
      console.warn("live connection:", msg.message);
      break;
    default:
      break;
  }
}

/** Keep one live connection open while `enabled`, subscribed to `markets`. */
export function useLiveConnection(enabled: boolean, markets: string[]): void {
  const qc = useQueryClient();
  const sockRef = useRef<LiveSocket | null>(null);
  const marketsKey = markets.join(",");

  useEffect(() => {
    if (!enabled) return;
    const sock = new LiveSocket({
      getConfig: () => qc.fetchQuery({ queryKey: keys.config, queryFn: api.config, staleTime: Infinity }),
      getTicket: api.wsTicket,
      onMessage: (msg) => handleMessage(qc, msg),
      onStatus: (status, retryAt) => useLive.getState().setStatus(status, retryAt),
      onResumed: () => {
        void qc.invalidateQueries({ queryKey: keys.account });
        void qc.invalidateQueries({ queryKey: keys.markets });
        void qc.invalidateQueries({ queryKey: ["candles"] });
        invalidateHistory(qc);
      },
      onAuthLost: () => qc.setQueryData(keys.whoami, null),
      isAuthError: (err) => err instanceof ApiError && (err.status === 401 || err.status === 403),
    });
    sockRef.current = sock;
    const online = () => sock.retryNow();
    window.addEventListener("online", online);
    return () => {
      window.removeEventListener("online", online);
      sock.stop();
      sockRef.current = null;
      useLive.getState().reset();
    };
  }, [enabled, qc]);

  useEffect(() => {
    const sock = sockRef.current;
    if (!sock || !marketsKey) return;
    const list = marketsKey.split(",");
    // start() is a no-op once running; subscribe() adds markets that appeared later.
    sock.start(list);
    sock.subscribe(list);
  }, [enabled, marketsKey]);
}
