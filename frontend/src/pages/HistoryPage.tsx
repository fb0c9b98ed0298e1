import { useId, useMemo, useState } from "react";
import { useClosedTrades, useLedger, useMarkets } from "../api/queries";
import { formatDateTime, formatPrice, formatQty, formatUsd, shortSymbol, type MarketFormat } from "../lib/format";
import type { ClosedTrade, LedgerEntry, Market } from "../lib/model";
import { href } from "../router";

const FALLBACK_FMT: MarketFormat = { priceDecimals: 2, qtyDecimals: 4 };

const KIND_LABEL: Record<string, string> = {
  deposit: "Deposit",
  margin_lock: "Margin locked",
  margin_release: "Margin released",
  realized_pnl: "Realized PnL",
  fee: "Trading fee",
  funding: "Funding",
  liquidation_fee: "Liquidation fee",
  bankruptcy_cover: "Insurance cover",
  reset: "Account reset",
  order_reserve: "Reserved for order",
  order_release: "Order reserve released",
};

const REASON_LABEL: Record<string, string> = {
  close: "Closed",
  liquidation: "Liquidated",
  take_profit: "Take-profit",
  stop_loss: "Stop-loss",
  limit_close: "Limit close",
};

function tone(v: number | null): string {
  if (v === null || v === 0) return "";
  return v > 0 ? "up" : "down";
}

export function HistoryPage({ tab }: { tab: "trades" | "ledger" }) {
  const markets = useMarkets(true);
  const bySymbol = useMemo(() => new Map((markets.data ?? []).map((m) => [m.symbol, m])), [markets.data]);
  return (
    <div className="history">
      <div className="history__head">
        <h1>History</h1>
        <nav className="tabs tabs--links" aria-label="History sections">
          <a href={href("/history")} aria-current={tab === "trades" ? "page" : undefined} className={tab === "trades" ? "is-active" : ""} data-testid="history-tab-trades">
            Closed trades
          </a>
          <a href={href("/history/ledger")} aria-current={tab === "ledger" ? "page" : undefined} className={tab === "ledger" ? "is-active" : ""} data-testid="history-tab-ledger">
            Ledger
          </a>
        </nav>
      </div>
      {tab === "trades" ? <ClosedTrades bySymbol={bySymbol} /> : <Ledger />}
    </div>
  );
}

function ClosedTrades({ bySymbol }: { bySymbol: Map<string, Market> }) {
  const q = useClosedTrades();
  const trades = q.data ?? [];
  const stats = useMemo(() => summarize(trades), [trades]);

  return (
    <>
      <section className="summary-cards" aria-label="Summary of closed trades">
        <div className="card stat">
          <span className="stat__label">Realized PnL</span>
          <span className={`stat__value mono ${tone(stats.pnl)}`} data-testid="history-realized-pnl">
            {formatUsd(stats.pnl, { plus: true })}
          </span>
        </div>
        <div className="card stat">
          <span className="stat__label">Closed trades</span>
          <span className="stat__value mono">{trades.length}</span>
        </div>
        <div className="card stat">
          <span className="stat__label">Win rate</span>
          <span className="stat__value mono">{trades.length ? `${((stats.wins / trades.length) * 100).toFixed(1)}%` : "—"}</span>
        </div>
        <div className="card stat">
          <span className="stat__label">Liquidations</span>
          <span className={`stat__value mono ${stats.liquidations ? "down" : ""}`}>{stats.liquidations}</span>
        </div>
      </section>

      <section className="card" aria-label="Closed trades">
        {q.isLoading ? (
          <p className="empty">Loading trades…</p>
        ) : q.isError ? (
          <p className="form-error" role="alert">
            {(q.error as Error).message}
          </p>
        ) : trades.length === 0 ? (
          <p className="empty" data-testid="history-empty">
            No closed trades yet.
          </p>
        ) : (
          <div className="table-wrap">
            <table className="table table--cards">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Market</th>
                  <th scope="col" className="num">Size</th>
                  <th scope="col" className="num">Entry</th>
                  <th scope="col" className="num">Exit</th>
                  <th scope="col" className="num">Margin</th>
                  <th scope="col" className="num">Fees</th>
                  <th scope="col" className="num">Funding</th>
                  <th scope="col" className="num">PnL</th>
                  <th scope="col">Status</th>
                </tr>
              </thead>
              <tbody>
                {trades.map((t) => (
                  <ClosedRow key={`${t.id}:${t.time}:${t.qty}`} t={t} fmt={bySymbol.get(t.market) ?? FALLBACK_FMT} />
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

function summarize(trades: ClosedTrade[]) {
  let pnl = 0;
  let wins = 0;
  let liquidations = 0;
  for (const t of trades) {
    pnl += t.pnl;
    if (t.pnl > 0) wins++;
    if (t.liquidated) liquidations++;
  }
  return { pnl, wins, liquidations };
}

function ClosedRow({ t, fmt }: { t: ClosedTrade; fmt: MarketFormat }) {
  const long = t.side > 0;
  const status = t.liquidated ? "Liquidated" : (t.reason && REASON_LABEL[t.reason]) || "Closed";
  return (
    <tr data-testid="history-row" data-trade-id={t.id} data-liquidated={t.liquidated ? "true" : "false"}>
      <td data-label="Time" className="mono small">
        {formatDateTime(t.time)}
      </td>
      <td data-label="Market">
        <strong>{shortSymbol(t.market)}</strong>{" "}
        <span className={`pill ${long ? "pill--long" : "pill--short"}`}>
          {long ? "Long" : "Short"} {t.leverage}×
        </span>
        {t.marginMode && <span className="pill pill--muted">{t.marginMode === "isolated" ? "Isolated" : "Cross"}</span>}
      </td>
      <td data-label="Size" className="num mono">
        {formatQty(t.qty, fmt)}
      </td>
      <td data-label="Entry" className="num mono">
        {formatPrice(t.entry, fmt)}
      </td>
      <td data-label="Exit" className="num mono">
        {formatPrice(t.exit, fmt)}
      </td>
      <td data-label="Margin" className="num mono">
        {formatUsd(t.margin)}
      </td>
      <td data-label="Fees" className="num mono">
        {t.fees === null ? "—" : formatUsd(t.fees, { decimals: 4 })}
      </td>
      <td data-label="Funding" className="num mono">
        {t.funding === null ? "—" : formatUsd(t.funding, { decimals: 4 })}
      </td>
      <td data-label="PnL" className={`num mono ${tone(t.pnl)}`} data-testid="history-pnl">
        {formatUsd(t.pnl, { plus: true })}
      </td>
      <td data-label="Status">
        <span className={`pill ${t.liquidated ? "pill--danger" : "pill--muted"}`} data-testid="history-status">
          {status}
        </span>
      </td>
    </tr>
  );
}

function Ledger() {
  const q = useLedger();
  const id = useId();
  const [kind, setKind] = useState("all");
  const entries: LedgerEntry[] = useMemo(() => (q.data?.pages ?? []).flatMap((p) => p.entries), [q.data]);
  const kinds = useMemo(() => Array.from(new Set(entries.map((e) => e.kind))).sort(), [entries]);
  const shown = kind === "all" ? entries : entries.filter((e) => e.kind === kind);
  const total = shown.reduce((s, e) => s + e.amount, 0);

  return (
    <section className="card" aria-label="Ledger">
      <div className="card__head">
        <div className="field field--inline">
          <label htmlFor={`${id}-kind`}>Show</label>
          <select id={`${id}-kind`} value={kind} onChange={(e) => setKind(e.target.value)} data-testid="ledger-filter">
            <option value="all">All entries</option>
            {kinds.map((k) => (
              <option key={k} value={k}>
                {KIND_LABEL[k] ?? k}
              </option>
            ))}
          </select>
        </div>
        {kind !== "all" && (
          <span className="muted small">
            Sum of {shown.length} loaded: <span className={`mono ${tone(total)}`}>{formatUsd(total, { plus: true, decimals: 4 })}</span>
          </span>
        )}
      </div>
      {q.isLoading ? (
        <p className="empty">Loading ledger…</p>
      ) : q.isError ? (
        <p className="form-error" role="alert">
          {(q.error as Error).message}
        </p>
      ) : shown.length === 0 ? (
        <p className="empty">No ledger entries.</p>
      ) : (
        <div className="table-wrap">
          <table className="table table--cards">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Entry</th>
                <th scope="col">Market</th>
                <th scope="col" className="num">Amount</th>
                <th scope="col" className="num">Balance after</th>
                <th scope="col">Trade</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((e) => (
                <tr key={e.id} data-testid="ledger-row" data-kind={e.kind}>
                  <td data-label="Time" className="mono small">
                    {formatDateTime(e.time)}
                  </td>
                  <td data-label="Entry">{KIND_LABEL[e.kind] ?? e.kind}</td>
                  <td data-label="Market">{e.market ? shortSymbol(e.market) : "—"}</td>
                  <td data-label="Amount" className={`num mono ${tone(e.amount)}`}>
                    {formatUsd(e.amount, { plus: true, decimals: 4 })}
                  </td>
                  <td data-label="Balance after" className="num mono">
                    {formatUsd(e.balanceAfter, { decimals: 4 })}
                  </td>
                  <td data-label="Trade" className="mono small muted" title={e.tradeId ?? undefined}>
                    {e.tradeId ? e.tradeId.slice(0, 10) : "—"}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {q.hasNextPage && (
        <div className="load-more">
          <button type="button" className="btn btn--ghost" onClick={() => void q.fetchNextPage()} disabled={q.isFetchingNextPage} data-testid="ledger-more">
            {q.isFetchingNextPage ? "Loading…" : "Load older entries"}
          </button>
        </div>
      )}
    </section>
  );
}
