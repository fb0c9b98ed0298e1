// One function per /api/v1 endpoint the app uses (docs/contracts.md).

import { request } from "./client";
import type {
  CancelOrderReply,
  CloseTradeReply,
  OpenTradeBody,
  OpenTradeReply,
  PlaceOrderBody,
  PlaceOrderReply,
  TpslBody,
  TradeReply,
  WireAccount,
  WireCandles,
  WireClosedTrade,
  WireConfig,
  WireLedgerPage,
  WireMarket,
  WireRestingOrder,
  WireUser,
} from "./types";

export const api = {
  config: () => request<WireConfig>("/config"),
  whoami: () => request<{ user: WireUser }>("/user/whoami", { quiet401: true }),
  signup: (email: string, password: string) =>
    request<{ message: string; user: WireUser }>("/user/signup", {
      method: "POST",
      body: { email, password },
      quiet401: true,
    }),
  signin: (email: string, password: string) =>
    request<{ message: string; user: WireUser }>("/user/signin", {
      method: "POST",
      body: { email, password },
      quiet401: true,
    }),
  logout: () => request<{ message: string }>("/user/logout", { method: "POST", quiet401: true }),
  markets: () => request<{ markets: WireMarket[] }>("/markets"),
  account: () => request<{ account: WireAccount }>("/account"),
  candles: (symbol: string, interval: string, limit: number) =>
    request<WireCandles>("/candles", { query: { symbol, interval, limit } }),
  openTrade: (body: OpenTradeBody) => request<OpenTradeReply>("/trade/open", { method: "POST", body }),
  closeTrade: (orderId: string, quantity?: number) =>
    request<CloseTradeReply>("/trade/close", {
      method: "POST",
      body: quantity === undefined ? { orderId } : { orderId, quantity },
    }),
  placeOrder: (body: PlaceOrderBody) => request<PlaceOrderReply>("/orders", { method: "POST", body }),
  orders: () => request<{ orders: WireRestingOrder[] }>("/orders"),
  cancelOrder: (orderId: string) =>
    request<CancelOrderReply>(`/orders/${encodeURIComponent(orderId)}`, { method: "DELETE" }),
  setTpsl: (tradeId: string, body: TpslBody) =>
    request<TradeReply>(`/trade/${encodeURIComponent(tradeId)}/tpsl`, { method: "PUT", body }),
  addMargin: (tradeId: string, amount: number) =>
    request<TradeReply>(`/trade/${encodeURIComponent(tradeId)}/margin`, { method: "POST", body: { amount } }),
  closedTrades: () => request<{ trades: WireClosedTrade[] }>("/trade/closed"),
  ledger: (limit: number, before?: string | number | null) =>
    request<WireLedgerPage>("/ledger", { query: { limit, before: before ?? undefined } }),
  wsTicket: () => request<{ ticket: string; expires_in: number }>("/ws/ticket", { method: "POST" }),
};
