// Toast text for the fills in an `account` push.

import { formatBps, formatPrice, formatQty, formatUsd, shortSymbol, type MarketFormat } from "../lib/format";
import type { TradeNotice } from "../lib/model";
import type { ToastTone } from "./toasts";

const FALLBACK: MarketFormat = { priceDecimals: 2, qtyDecimals: 4 };

export interface ToastText {
  key: string;
  tone: ToastTone;
  title: string;
  body: string;
  ttlMs: number;
}

export function noticeToast(n: TradeNotice, fmt: MarketFormat | undefined): ToastText {
  const f = fmt ?? FALLBACK;
  const side = n.side > 0 ? "Long" : "Short";
  const what = `${side} ${formatQty(n.qty, f)} ${shortSymbol(n.market)}`;
  const at = n.price !== null ? ` @ ${formatPrice(n.price, f)}` : "";
  const pnl = n.pnl !== null ? ` · PnL ${formatUsd(n.pnl, { plus: true })}` : "";
  switch (n.kind) {
    case "opened":
      return { key: n.key, tone: n.side > 0 ? "long" : "short", title: "Order filled", body: `${what} opened${at}`, ttlMs: 6000 };
    case "liquidated":
      return { key: n.key, tone: "danger", title: "Position liquidated", body: `${what}${at}${pnl}`, ttlMs: 12_000 };
    case "take_profit":
      return { key: n.key, tone: "success", title: "Take-profit filled", body: `${what} closed${at}${pnl}`, ttlMs: 8000 };
    case "stop_loss":
      return { key: n.key, tone: "error", title: "Stop-loss filled", body: `${what} closed${at}${pnl}`, ttlMs: 8000 };
    case "limit_close":
      return { key: n.key, tone: "info", title: "Limit order filled", body: `${what} closed${at}${pnl}`, ttlMs: 8000 };
    case "order_filled":
      return { key: n.key, tone: n.side > 0 ? "long" : "short", title: "Limit order filled", body: `${what} opened${at}`, ttlMs: 8000 };
    case "order_expired":
      return { key: n.key, tone: "info", title: "Limit order expired", body: `${what}${at} · reserve released`, ttlMs: 8000 };
    case "order_dropped":
      return { key: n.key, tone: "info", title: "Limit order cancelled", body: `${what}${at} · its position closed`, ttlMs: 6000 };
    case "partial":
      return { key: n.key, tone: "info", title: "Position reduced", body: `${what} closed${at}${pnl}`, ttlMs: 6000 };
    default:
      return { key: n.key, tone: "info", title: "Position closed", body: `${what} closed${at}${pnl}`, ttlMs: 6000 };
  }
}

/** margin_warning / margin_ok events (cross margin ratio crossed 80% / fell below 70%). */
export function marginToast(type: string, ratioBps: number | null | undefined): ToastText | null {
  const ratio = typeof ratioBps === "number" ? ` (${formatBps(ratioBps, { plus: false })})` : "";
  if (type === "margin_warning") {
    return {
      key: "margin",
      tone: "danger",
      title: "Margin warning",
      body: `Cross margin ratio${ratio} is close to liquidation (100%). Close or reduce cross positions to lower it.`,
      ttlMs: 12_000,
    };
  }
  if (type === "margin_ok") {
    return { key: "margin", tone: "success", title: "Margin back to normal", body: `Cross margin ratio${ratio}.`, ttlMs: 6000 };
  }
  return null;
}
