import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { backoffDelay, LiveSocket, socketUrl, type SocketStatus } from "./socket";

class FakeWS {
  static instances: FakeWS[] = [];
  readyState = 0;
  sent: unknown[] = [];
  closedWith: number | null = null;
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(public url: string) {
    FakeWS.instances.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.closedWith = code;
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  drop() {
    this.readyState = 3;
    this.onclose?.();
  }
  receive(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
}

function setup() {
  const statuses: SocketStatus[] = [];
  const messages: unknown[] = [];
  let tickets = 0;
  const resumed = vi.fn();
  const authLost = vi.fn();
  const ticketFail = { status: 0 as number };
  const sock = new LiveSocket(
    {
      getConfig: async () => ({ ws_url: "ws://127.0.0.1:8001", markets: [], decimal: 4 }),
      getTicket: async () => {
        if (ticketFail.status) throw Object.assign(new Error("no"), { status: ticketFail.status });
        return { ticket: `tk${++tickets}` };
      },
      onMessage: (m) => messages.push(m),
      onStatus: (s) => statuses.push(s),
      onResumed: resumed,
      onAuthLost: authLost,
      isAuthError: (e) => (e as { status?: number }).status === 401,
    },
    { WebSocketImpl: FakeWS as unknown as typeof WebSocket, random: () => 0, pingIntervalMs: 1000, silenceTimeoutMs: 3000 },
  );
  return { sock, statuses, messages, resumed, authLost, ticketFail };
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe("backoff", () => {
  it("doubles up to 30 s with jitter in the upper half", () => {
    expect(backoffDelay(0, () => 0)).toBe(500);
    expect(backoffDelay(0, () => 1)).toBe(1000);
    expect(backoffDelay(3, () => 0)).toBe(4000);
    expect(backoffDelay(20, () => 1)).toBe(30_000);
  });
});

describe("socketUrl", () => {
  it("adds the ticket and resolves relative or http URLs", () => {
    expect(socketUrl("ws://127.0.0.1:8001", "a b")).toBe("ws://127.0.0.1:8001?ticket=a%20b");
    expect(socketUrl("wss://x.example/prod?v=1", "t")).toBe("wss://x.example/prod?v=1&ticket=t");
    expect(socketUrl("https://x.example/ws", "t")).toBe("wss://x.example/ws?ticket=t");
    expect(socketUrl("/ws", "t", { protocol: "https:", host: "app.example" })).toBe("wss://app.example/ws?ticket=t");
  });
});

describe("LiveSocket", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeWS.instances = [];
  });
  afterEach(() => vi.useRealTimers());

  it("connects with a ticket, subscribes, and passes messages on", async () => {
    const { sock, statuses, messages } = setup();
    sock.start(["BTC_USDC_PERP", "ETH_USDC_PERP"]);
    await flush();
    const ws = FakeWS.instances[0];
    expect(ws.url).toBe("ws://127.0.0.1:8001?ticket=tk1");
    ws.open();
    expect(ws.sent[0]).toEqual({ type: "subscribe", markets: ["BTC_USDC_PERP", "ETH_USDC_PERP"] });
    ws.receive({ type: "pong" });
    expect(messages).toEqual([{ type: "pong" }]);
    expect(statuses).toEqual(["connecting", "connected"]);
    sock.stop();
  });

  it("reconnects after a drop with a new ticket, resubscribes and reports the resume", async () => {
    const { sock, statuses, resumed } = setup();
    sock.start(["BTC_USDC_PERP"]);
    await flush();
    FakeWS.instances[0].open();
    FakeWS.instances[0].drop();
    expect(statuses.at(-1)).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(500);
    await flush();
    const ws2 = FakeWS.instances[1];
    expect(ws2.url).toContain("ticket=tk2");
    ws2.open();
    expect(ws2.sent[0]).toEqual({ type: "subscribe", markets: ["BTC_USDC_PERP"] });
    expect(statuses.at(-1)).toBe("connected");
    expect(resumed).toHaveBeenCalledTimes(1);
    sock.stop();
  });

  it("backs off longer on each failed attempt", async () => {
    const { sock } = setup();
    sock.start([]);
    await flush();
    FakeWS.instances[0].drop(); // never opened
    await vi.advanceTimersByTimeAsync(500);
    await flush();
    expect(FakeWS.instances).toHaveLength(2);
    FakeWS.instances[1].drop();
    await vi.advanceTimersByTimeAsync(999);
    await flush();
    expect(FakeWS.instances).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    await flush();
    expect(FakeWS.instances).toHaveLength(3);
    sock.stop();
  });

  it("pings, and drops a connection that went silent", async () => {
    const { sock } = setup();
    sock.start([]);
    await flush();
    const ws = FakeWS.instances[0];
    ws.open();
    await vi.advanceTimersByTimeAsync(1000);
    expect(ws.sent).toContainEqual({ type: "ping" });
    await vi.advanceTimersByTimeAsync(3000);
    expect(ws.closedWith).toBe(4000);
    await vi.advanceTimersByTimeAsync(600);
    await flush();
    expect(FakeWS.instances).toHaveLength(2);
    sock.stop();
  });

  it("stops for good when the ticket is refused", async () => {
    const { sock, authLost, ticketFail, statuses } = setup();
    ticketFail.status = 401;
    sock.start([]);
    await flush();
    expect(authLost).toHaveBeenCalled();
    expect(statuses.at(-1)).toBe("idle");
    expect(FakeWS.instances).toHaveLength(0);
  });
});
