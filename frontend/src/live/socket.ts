// The live connection: one WebSocket per signed-in tab.
//
// Auth always goes through a single-use ticket (POST /api/v1/ws/ticket, then
// `${ws_url}?ticket=...`), which works whether or not the browser sends the
// `jwt` cookie to the socket's origin. When the socket drops it reconnects by
// itself with exponential backoff and jitter, fetching a fresh ticket and
// subscribing again; a heartbeat notices a connection that died silently.

import type { ServerMessage, WireConfig } from "../api/types";

export type SocketStatus = "idle" | "connecting" | "connected" | "reconnecting";

export interface SocketHandlers {
  getConfig: () => Promise<WireConfig>;
  getTicket: () => Promise<{ ticket: string }>;
  onMessage: (msg: ServerMessage) => void;
  onStatus: (status: SocketStatus, retryAt: number | null) => void;
  /** the socket is open again after a drop: refetch what pushes may have missed */
  onResumed: () => void;
  /** the ticket request was refused (401/403): the session is over */
  onAuthLost: () => void;
  isAuthError: (err: unknown) => boolean;
}

export interface SocketOptions {
  WebSocketImpl?: typeof WebSocket;
  pingIntervalMs?: number;
  /** no message for this long: the connection is presumed dead */
  silenceTimeoutMs?: number;
  random?: () => number;
  location?: { protocol: string; host: string };
}

const MAX_BACKOFF_MS = 30_000;
const BASE_BACKOFF_MS = 1_000;

/** Exponential backoff with "equal jitter": attempt 0 -> 0.5..1 s, 1 -> 1..2 s, ... capped at 30 s. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const cap = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** Math.min(attempt, 10));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** Resolve ws_url from /config (absolute ws(s)://, http(s):// or a path) and add the ticket. */
export function socketUrl(wsUrl: string, ticket: string, loc?: { protocol: string; host: string }): string {
  let url = wsUrl.trim();
  if (url.startsWith("/") && loc) {
    url = `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}${url}`;
  } else if (url.startsWith("http://")) {
    url = "ws://" + url.slice("http://".length);
  } else if (url.startsWith("https://")) {
    url = "wss://" + url.slice("https://".length);
  }
  const sep = url.includes("?") ? "&" : "?";
  return `${url}${sep}ticket=${encodeURIComponent(ticket)}`;
}

export class LiveSocket {
  private readonly h: SocketHandlers;
  private readonly WS: typeof WebSocket;
  private readonly pingMs: number;
  private readonly silenceMs: number;
  private readonly random: () => number;
  private readonly loc?: { protocol: string; host: string };

  private ws: WebSocket | null = null;
  private generation = 0;
  private attempt = 0;
  private stopped = true;
  private everOpened = false;
  private markets: string[] = [];
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastMessageAt = 0;
  private config: WireConfig | null = null;

  constructor(handlers: SocketHandlers, opts: SocketOptions = {}) {
    this.h = handlers;
    this.WS = opts.WebSocketImpl ?? WebSocket;
    this.pingMs = opts.pingIntervalMs ?? 20_000;
    this.silenceMs = opts.silenceTimeoutMs ?? 50_000;
    this.random = opts.random ?? Math.random;
    this.loc = opts.location ?? (typeof window !== "undefined" ? window.location : undefined);
  }

  start(markets: string[]): void {
    this.markets = [...markets];
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this.everOpened = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.generation++;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= 1) ws.close(1000, "bye");
    this.h.onStatus("idle", null);
  }

  /** Subscribe to more markets (the set only grows while connected). */
  subscribe(markets: string[]): void {
    const added = markets.filter((m) => !this.markets.includes(m));
    if (added.length === 0) return;
    this.markets.push(...added);
    this.send({ type: "subscribe", markets: added });
  }

  /** Try now instead of waiting out the backoff (e.g. the browser came back online). */
  retryNow(): void {
    if (this.stopped || this.ws) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    void this.connect();
  }

  private send(msg: unknown): void {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(msg));
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.retryTimer = null;
    this.pingTimer = null;
  }

  private async connect(): Promise<void> {
    const gen = ++this.generation;
    this.h.onStatus(this.everOpened || this.attempt > 0 ? "reconnecting" : "connecting", null);
    let url: string;
    try {
      this.config ??= await this.h.getConfig();
      const { ticket } = await this.h.getTicket();
      url = socketUrl(this.config.ws_url, ticket, this.loc);
    } catch (err) {
      if (gen !== this.generation || this.stopped) return;
      if (this.h.isAuthError(err)) {
        this.stop();
        this.h.onAuthLost();
        return;
      }
      this.scheduleReconnect();
      return;
    }
    if (gen !== this.generation || this.stopped) return;

    const ws = new this.WS(url);
    this.ws = ws;
    ws.onopen = () => {
      if (gen !== this.generation) return;
      const resumed = this.everOpened || this.attempt > 0;
      this.attempt = 0;
      this.everOpened = true;
      this.lastMessageAt = Date.now();
      this.h.onStatus("connected", null);
      if (this.markets.length) this.send({ type: "subscribe", markets: this.markets });
      this.pingTimer = setInterval(() => this.heartbeat(), this.pingMs);
      if (resumed) this.h.onResumed();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (gen !== this.generation) return;
      this.lastMessageAt = Date.now();
      let msg: ServerMessage;
      try {
        msg = JSON.parse(typeof ev.data === "string" ? ev.data : String(ev.data)) as ServerMessage;
      } catch {
        return;
      }
      if (msg && typeof msg === "object" && typeof msg.type === "string") this.h.onMessage(msg);
    };
    ws.onclose = () => {
      if (gen !== this.generation) return;
      this.ws = null;
      if (this.pingTimer) clearInterval(this.pingTimer);
      this.pingTimer = null;
      if (!this.stopped) this.scheduleReconnect();
    };
    ws.onerror = () => {
      // a close event follows; reconnecting is handled there
    };
  }

  private heartbeat(): void {
    if (!this.ws) return;
    if (Date.now() - this.lastMessageAt > this.silenceMs) {
      // Silent for too long: drop it and reconnect.
      const ws = this.ws;
      this.ws = null;
      this.generation++;
      if (this.pingTimer) clearInterval(this.pingTimer);
      this.pingTimer = null;
      ws.close(4000, "heartbeat timeout");
      this.scheduleReconnect();
      return;
    }
    this.send({ type: "ping" });
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.random);
    this.attempt++;
    const retryAt = Date.now() + delay;
    this.h.onStatus("reconnecting", retryAt);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
  }
}
