// Shapes on the wire, as docs/contracts.md and api-v1.md describe them.
// Prices and USD are integers with 4 implied decimals ("decimal": 4);
// quantities are JSON numbers of base units. Fields the contract marks as
// additions are optional so older replies still parse.

export type WireSide = "long" | "short";
export type WireMarginMode = "cross" | "isolated";

export interface WireUser {
  id: string | number;
  email: string;
}

export interface WireConfig {
  ws_url: string;
  markets: string[];
  decimal: number;
}

export interface WireMarket {
  symbol: string;
  name: string;
  bid: number | null;
  ask: number | null;
  mark: number | null;
  index: number | null;
  decimal: number;
  funding_rate: string | null;
  next_funding_time: number | null;
  max_leverage: number;
  taker_fee_bps: number;
  maker_fee_bps: number;
  /** price step: a 4-decimal int per the contract's units (1000 = 0.1); decimal text is accepted too */
  tick_size: number | string;
  /** quantity step in base units (0.0001) */
  qty_step: number | string;
  stale: boolean;
  updated_at: number | null;
  change_24h_bps: number | null;
}

/** An open trade as GET /account and GET /trade/open report it (api-v1 `order` + additions). */
export interface WireTrade {
  id: string;
  type: WireSide;
  leverage: number;
  asset: string;
  margin: number;
  quantity: number;
  openPrice: number;
  mark?: number | null;
  unrealized_pnl?: number | null;
  liquidation_price?: number | null;
  margin_mode?: WireMarginMode;
  fees?: number;
  funding?: number;
  fee?: number;
  take_profit?: number | null;
  stop_loss?: number | null;
  createdAt?: number | string;
  opened_ms?: number;
}

/** The engine's trade shape (events may carry it as is). */
export interface EngineTrade {
  id: string;
  market: string;
  side: 1 | -1;
  qty: number; // 1e-8 units
  entry: number;
  leverage: number;
  margin: number;
  margin_mode: WireMarginMode;
  fees?: number;
  funding?: number;
  take_profit?: number | null;
  stop_loss?: number | null;
  opened_ms?: number;
}

/** A resting limit order as GET /orders and GET /account report it. */
export interface WireRestingOrder {
  id: string | null;
  type: WireSide;
  asset: string;
  quantity: number;
  limitPrice: number;
  leverage: number | null;
  margin_mode?: WireMarginMode;
  reserved_margin?: number;
  reserved_fee?: number;
  decimal?: number;
  placed_ms?: number | null;
  createdAt?: string | null;
  expires_at?: number | null;
  reduce_only?: boolean;
  reduce_only_trade_id?: string | null;
  status?: "open" | "filled" | "cancelled";
}

/** The engine's order shape (order_placed / order_closed events carry it as is). */
export interface EngineOrder {
  id: string;
  market: string;
  side: 1 | -1;
  qty: number; // 1e-8 units
  limit_price: number;
  leverage: number;
  margin_mode: WireMarginMode;
  reserved_margin?: number;
  reserved_fee?: number;
  placed_ms?: number;
  expires_ms?: number | null;
  reduce_only?: boolean;
  trade_id?: string | null;
}

export interface WireAccount {
  balance: number;
  equity: number;
  margin_used: number;
  maintenance: number;
  available: number;
  margin_ratio_bps: number;
  unrealized_pnl: number;
  decimal: number;
  trades: WireTrade[];
  orders: (WireRestingOrder | EngineOrder)[];
  /** margin + fee held by resting orders (out of the balance, not in equity) */
  reserved?: number;
  /** the cross margin ratio reached 80% (cleared below 70%) */
  margin_warning?: boolean;
}

export interface WireClosedTrade {
  id: string;
  openPrice: number;
  closePrice: number;
  leverage: number;
  asset: string;
  margin: number;
  quantity: number;
  type: WireSide;
  pnl: number;
  decimal: number;
  liquidated: boolean;
  userId?: string | number;
  createdAt?: number | string;
  closedAt?: number | string;
  closed_at?: number | string;
  margin_mode?: WireMarginMode;
  fees?: number;
  fee?: number;
  funding?: number;
  reason?: string;
}

export interface WireLedgerEntry {
  id: string | number;
  kind: string;
  amount: number;
  balance_after: number;
  trade_id: string | null;
  asset: string | null;
  created_at: number | string;
}

export interface WireLedgerPage {
  entries: WireLedgerEntry[];
  decimal: number;
  next: string | number | null;
}

export interface WireCandle {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
}

export interface WireCandles {
  symbol: string;
  interval: string;
  decimal: number;
  candles: WireCandle[];
}

export interface WireLivePrice {
  bid: number | null;
  ask: number | null;
  mark: number | null;
  index?: number | null;
  funding_rate?: string | null;
  ts?: number;
}

export interface OpenTradeBody {
  asset: string;
  type: WireSide;
  quantity: number;
  leverage: number;
  slippage: number;
  openPrice: number;
  decimal: 4;
  margin_mode: WireMarginMode;
  take_profit?: number;
  stop_loss?: number;
}

export interface OpenTradeReply {
  message: string;
  order: WireTrade;
  orderId: string;
  openOrders?: WireTrade[];
  usdBalance?: { balance: number; decimal: number };
}

export interface PlaceOrderBody {
  asset: string;
  type: WireSide;
  quantity: number;
  leverage?: number;
  limitPrice: number;
  decimal: 4;
  margin_mode?: WireMarginMode;
  post_only?: boolean;
  /** good-till-time, ms since the epoch */
  expires_at?: number;
  reduce_only_trade_id?: string;
}

export interface PlaceOrderReply {
  message: string;
  order: WireRestingOrder;
  usdBalance?: { balance: number; decimal: number };
  /** the trade a marketable order opened at once */
  trade?: WireTrade | null;
  closed?: { closePrice: number; quantity: number; pnl: number; fee: number; remaining_quantity: number } | null;
}

export interface CancelOrderReply {
  message: string;
  usdBalance?: { balance: number; decimal: number };
  order?: WireRestingOrder | null;
}

/** PUT /trade/{id}/tpsl: a key left out keeps its value; null removes it. */
export interface TpslBody {
  take_profit?: number | null;
  stop_loss?: number | null;
}

export interface TradeReply {
  message: string;
  order: WireTrade;
  usdBalance?: { balance: number; decimal: number };
}

export interface CloseTradeReply {
  message: string;
  openOrders?: WireTrade[];
  usdBalance?: { balance: number; decimal: number };
}

/** One event of an `account` push (contracts.md, "Events"). */
export interface WireEvent {
  id?: string;
  type: string;
  ts?: number;
  trade?: WireTrade | EngineTrade;
  close_price?: number;
  closed_qty?: number;
  pnl?: number;
  fee?: number;
  reason?: string;
  liquidated?: boolean;
  remaining_qty?: number;
  kind?: string;
  amount?: number;
  balance_after?: number;
  trade_id?: string;
  market?: string;
  /** order_placed / order_closed */
  order?: EngineOrder | WireRestingOrder;
  /** margin_warning / margin_ok */
  margin_ratio_bps?: number | null;
  equity?: number;
  maintenance?: number;
}

export type ServerMessage =
  | { type: "prices"; prices: Record<string, WireLivePrice>; decimal?: number }
  | { type: "account"; account: WireAccount; events?: WireEvent[] }
  | { type: "pong" }
  | { type: "subscribed"; markets: string[] }
  | { type: "error"; message: string };
