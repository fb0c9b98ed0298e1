// Carry the account forward between `account` pushes with the live marks.
//
// GET /account and each `account` push give balance, equity, uPnL, available
// and the margin ratio at the marks the server used. Prices move several times
// a second while the account only changes on trades, so each figure that
// depends on the mark is moved by the difference between the live uPnL and the
// uPnL the server used — but only after checking that the server's own figure
// is the sum this code thinks it is (all trades or cross trades only). When it
// is not, the server's figure is shown as it came.

import { maintenance, pnl } from "./calc";
import type { Account, RestingOrder, Trade } from "./model";

export interface LiveTrade {
  trade: Trade;
  /** the live mark, or the server's when no live price came yet */
  mark: number | null;
  /** s x q x (mark - entry) at that mark */
  pnl: number | null;
  /** pnl as a share of the trade's margin, in bps */
  roeBps: number | null;
}

export interface LiveAccount {
  balance: number;
  equity: number;
  unrealizedPnl: number;
  available: number;
  marginUsed: number;
  maintenance: number;
  marginRatioBps: number;
  trades: LiveTrade[];
  /** resting limit orders, as the server sent them */
  orders: RestingOrder[];
  /** margin + fee held by resting orders (not in balance or equity) */
  reserved: number;
  /** the engine's margin warning flag (ratio reached 80%, cleared below 70%) */
  marginWarning: boolean;
  /** true when equity etc. follow live marks (false: shown as the server sent them) */
  live: boolean;
}

type Scope = "all" | "cross";

function sumWhere<T>(rows: T[], pick: (r: T) => number, where: (r: T) => boolean): number {
  let s = 0;
  for (const r of rows) if (where(r)) s += pick(r);
  return s;
}

export function ratioBps(mm: number, equity: number): number {
  if (mm <= 0) return 0;
  if (equity <= 0) return 10_000;
  return Math.floor((mm * 10_000) / equity);
}

export function liveAccount(
  acct: Account,
  marks: Record<string, number | null | undefined>,
  mmrOf: (market: string) => number | null,
): LiveAccount {
  const rows = acct.trades.map((t) => {
    const serverU = t.unrealizedPnl ?? (t.mark !== null ? pnl(t.side, t.qty, t.entry, t.mark) : null);
    const liveMark = marks[t.market] ?? t.mark;
    const liveU = liveMark !== null && liveMark !== undefined ? pnl(t.side, t.qty, t.entry, liveMark) : serverU;
    const roeBps = liveU !== null && t.margin > 0 ? Math.round((liveU * 10_000) / t.margin) : null;
    return { trade: t, mark: liveMark ?? null, pnl: liveU, roeBps, serverU };
  });
  const trades: LiveTrade[] = rows.map(({ trade, mark, pnl: p, roeBps }) => ({ trade, mark, pnl: p, roeBps }));
  const fixed: LiveAccount = {
    balance: acct.balance,
    equity: acct.equity,
    unrealizedPnl: acct.unrealizedPnl,
    available: acct.available,
    marginUsed: acct.marginUsed,
    maintenance: acct.maintenance,
    marginRatioBps: acct.marginRatioBps,
    trades,
    orders: acct.orders,
    reserved: acct.reserved,
    marginWarning: acct.marginWarning,
    live: false,
  };
  if (rows.length === 0) return fixed;
  if (rows.some((r) => r.serverU === null || r.pnl === null)) return fixed;

  const tol = rows.length + 1;
  const inScope = (scope: Scope) => (r: (typeof rows)[number]) => scope === "all" || r.trade.marginMode === "cross";
  const delta = (scope: Scope) => sumWhere(rows, (r) => (r.pnl ?? 0) - (r.serverU ?? 0), inScope(scope));
  const pickScope = (actual: number, expected: (s: Scope) => number): Scope | null => {
    for (const s of ["all", "cross"] as Scope[]) if (Math.abs(actual - expected(s)) <= tol) return s;
    return null;
  };

  const uScope = pickScope(acct.unrealizedPnl, (s) => sumWhere(rows, (r) => r.serverU ?? 0, inScope(s)));
  const eqScope = pickScope(
    acct.equity,
    (s) => acct.balance + sumWhere(rows, (r) => r.trade.margin + (r.serverU ?? 0), inScope(s)),
  );
  const out = { ...fixed };
  if (uScope) out.unrealizedPnl = acct.unrealizedPnl + delta(uScope);
  if (eqScope) out.equity = acct.equity + delta(eqScope);
  out.available =
    acct.available +
    sumWhere(rows, (r) => Math.min(0, r.pnl ?? 0) - Math.min(0, r.serverU ?? 0), inScope("cross"));
  out.live = Boolean(uScope && eqScope);

  // Margin ratio = sum of cross maintenance / cross equity; recomputed live only
  // when the same computation at the server's marks gives the server's figure.
  const cross = rows.filter((r) => r.trade.marginMode === "cross");
  if (cross.length > 0) {
    const mmAt = (useLive: boolean): number | null => {
      let mm = 0;
      for (const r of cross) {
        const mmr = mmrOf(r.trade.market);
        const m = useLive ? r.mark : r.trade.mark;
        if (mmr === null || m === null) return null;
        mm += maintenance(r.trade.qty, m, mmr);
      }
      return mm;
    };
    const crossEq = (useLive: boolean) =>
      acct.balance + sumWhere(cross, (r) => r.trade.margin + ((useLive ? r.pnl : r.serverU) ?? 0), () => true);
    const mmServer = mmAt(false);
    const mmLive = mmAt(true);
    if (mmServer !== null && mmLive !== null) {
      const expected = ratioBps(mmServer, crossEq(false));
      if (Math.abs(expected - acct.marginRatioBps) <= 1) {
        out.marginRatioBps = ratioBps(mmLive, crossEq(true));
        out.maintenance = acct.maintenance + (mmLive - mmServer);
      }
    }
  }
  return out;
}
