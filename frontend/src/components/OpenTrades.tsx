import { useQueryClient } from "@tanstack/react-query";
import { useId, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import { api } from "../api/endpoints";
import { keys } from "../api/queries";
import { formatUnits, parseUnits, QTY_DECIMALS, unitsToQtyNumber } from "../lib/fixed";
import { formatBps, formatPrice, formatQty, formatUsd, shortSymbol, type MarketFormat } from "../lib/format";
import type { LiveTrade } from "../lib/liveAccount";
import type { Market } from "../lib/model";
import { checkAddMargin, checkTpsl, levelText } from "../lib/tradeEdit";
import { toast } from "../live/toasts";

const FALLBACK_FMT: MarketFormat = { priceDecimals: 2, qtyDecimals: 4 };

function tone(v: number | null): string {
  if (v === null || v === 0) return "";
  return v > 0 ? "up" : "down";
}

export function OpenTrades({
  trades,
  markets,
  onSelectMarket,
  loading,
  balance = null,
}: {
  trades: LiveTrade[];
  markets: Market[];
  onSelectMarket: (symbol: string) => void;
  loading: boolean;
  /** free balance, for adding margin to isolated trades */
  balance?: number | null;
}) {
  const bySymbol = new Map(markets.map((m) => [m.symbol, m]));
  return (
    <section className="card positions" aria-labelledby="positions-title">
      <div className="card__head">
        <h2 id="positions-title">
          Open positions <span className="count">{trades.length}</span>
        </h2>
      </div>
      {trades.length === 0 ? (
        <p className="empty" data-testid="open-trades-empty">
          {loading ? "Loading positions…" : "No open positions. Place an order to open one."}
        </p>
      ) : (
        <div className="table-wrap">
          <table className="table table--cards">
            <thead>
              <tr>
                <th scope="col">Market</th>
                <th scope="col" className="num">Size</th>
                <th scope="col" className="num">Entry</th>
                <th scope="col" className="num">Mark</th>
                <th scope="col" className="num">Liq. price</th>
                <th scope="col" className="num">Margin</th>
                <th scope="col" className="num">PnL (ROE)</th>
                <th scope="col" className="num">TP / SL</th>
                <th scope="col" className="num">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {trades.map((t) => (
                <TradeRow
                  key={t.trade.id}
                  t={t}
                  market={bySymbol.get(t.trade.market)}
                  onSelectMarket={onSelectMarket}
                  balance={balance}
                />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function TradeRow({
  t,
  market,
  onSelectMarket,
  balance,
}: {
  t: LiveTrade;
  market: Market | undefined;
  onSelectMarket: (symbol: string) => void;
  balance: number | null;
}) {
  const qc = useQueryClient();
  const id = useId();
  const fmt = market ?? FALLBACK_FMT;
  const tr = t.trade;
  const long = tr.side > 0;
  const [busy, setBusy] = useState(false);
  const [partialOpen, setPartialOpen] = useState(false);
  const [partialText, setPartialText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [tpslOpen, setTpslOpen] = useState(false);
  const [tpEdit, setTpEdit] = useState("");
  const [slEdit, setSlEdit] = useState("");
  const [marginOpen, setMarginOpen] = useState(false);
  const [marginText, setMarginText] = useState("");

  async function close(quantityUnits?: number) {
    setBusy(true);
    setError(null);
    try {
      const partial = quantityUnits !== undefined && quantityUnits < tr.qty;
      const reply = await api.closeTrade(tr.id, partial ? unitsToQtyNumber(quantityUnits) : undefined);
      toast({
        key: `close:${tr.id}`,
        tone: "info",
        title: partial ? "Position reduced" : reply.message === "Trade already closed" ? "Already closed" : "Position closed",
        body: `${long ? "Long" : "Short"} ${formatQty(partial ? quantityUnits : tr.qty, fmt)} ${shortSymbol(tr.market)}`,
      });
      setPartialOpen(false);
      setPartialText("");
    } catch (err) {
      const msg = err instanceof ApiError ? err.message : "The close could not be sent.";
      setError(msg);
      toast({ tone: "error", title: "Close failed", body: msg });
    } finally {
      setBusy(false);
      void qc.invalidateQueries({ queryKey: keys.account });
    }
  }

  const partialUnits = partialText.trim() ? parseUnits(partialText, QTY_DECIMALS) : null;
  let partialError: string | null = null;
  if (partialText.trim()) {
    if (partialUnits === null || partialUnits <= 0n) partialError = "Enter a positive quantity.";
    else if (market && partialUnits % BigInt(market.qtyStep) !== 0n) partialError = `Use steps of ${formatQty(market.qtyStep, fmt)}.`;
    else if (Number(partialUnits) > tr.qty) partialError = "More than the position holds.";
  }

  function submitPartial(e: FormEvent) {
    e.preventDefault();
    if (partialUnits === null || partialError) {
      setError(partialError ?? "Enter a quantity to close.");
      return;
    }
    void close(Number(partialUnits));
  }

  const isolated = tr.marginMode === "isolated";
  const rules = { tickSize: market?.tickSize ?? 1, priceDecimals: fmt.priceDecimals, mmrPpm: market?.mmrPpm ?? 5000 };
  const tpslCheck = checkTpsl(tr, tpEdit, slEdit, rules, t.mark);
  const marginCheck = isolated ? checkAddMargin(marginText, balance ?? 0, tr, rules.mmrPpm) : null;

  function toggleTpsl() {
    if (!tpslOpen) {
      setTpEdit(levelText(tr.takeProfit, fmt.priceDecimals));
      setSlEdit(levelText(tr.stopLoss, fmt.priceDecimals));
    }
    setTpslOpen((v) => !v);
    setError(null);
  }

  async function submitTpsl(e: FormEvent) {
    e.preventDefault();
    const body = tpslCheck.body;
    if (!body) {
      setError(tpslCheck.errors.tp ?? tpslCheck.errors.sl ?? tpslCheck.errors.form ?? "Check the prices.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const reply = await api.setTpsl(tr.id, body);
      const tp = reply.order?.take_profit ?? null;
      const sl = reply.order?.stop_loss ?? null;
      toast({
        key: `tpsl:${tr.id}`,
        tone: "info",
        title: "TP / SL updated",
        body: `${long ? "Long" : "Short"} ${shortSymbol(tr.market)} · TP ${tp !== null ? formatPrice(tp, fmt) : "none"} · SL ${
          sl !== null ? formatPrice(sl, fmt) : "none"
        }`,
      });
      setTpslOpen(false);
    } catch (err) {
      const msg = err instanceof ApiError ? err.message : "The change could not be sent.";
      setError(msg);
      toast({ tone: "error", title: "TP / SL not changed", body: msg });
    } finally {
      setBusy(false);
      void qc.invalidateQueries({ queryKey: keys.account });
    }
  }

  async function submitMargin(e: FormEvent) {
    e.preventDefault();
    if (!marginCheck || marginCheck.amount === null || marginCheck.error) {
      setError(marginCheck?.error ?? "Enter an amount to add.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const reply = await api.addMargin(tr.id, marginCheck.amount);
      const liq = reply.order?.liquidation_price ?? null;
      toast({
        key: `margin:${tr.id}`,
        tone: "info",
        title: "Margin added",
        body: `${formatUsd(marginCheck.amount)} to ${long ? "long" : "short"} ${shortSymbol(tr.market)}${
          liq !== null ? ` · liq. price ${formatPrice(liq, fmt)}` : ""
        }`,
      });
      setMarginOpen(false);
      setMarginText("");
    } catch (err) {
      const msg = err instanceof ApiError ? err.message : "The margin could not be added.";
      setError(msg);
      toast({ tone: "error", title: "Margin not added", body: msg });
    } finally {
      setBusy(false);
      void qc.invalidateQueries({ queryKey: keys.account });
    }
  }

  function presetPartial(pct: number) {
    const step = market?.qtyStep ?? 1;
    const q = Math.floor((tr.qty * pct) / 100 / step) * step;
    setPartialText(q > 0 ? formatUnits(q, QTY_DECIMALS, fmt.qtyDecimals, { group: false }) : "");
  }

  return (
    <>
      <tr className={`trade-row trade-row--${long ? "long" : "short"}`} data-testid="open-trade-row" data-trade-id={tr.id} data-market={tr.market}>
        <td data-label="Market">
          <button type="button" className="linklike" onClick={() => onSelectMarket(tr.market)} title="Show this market">
            <strong>{shortSymbol(tr.market)}</strong>
          </button>{" "}
          <span className={`pill ${long ? "pill--long" : "pill--short"}`} data-testid="trade-side">
            {long ? "Long" : "Short"} {tr.leverage}×
          </span>{" "}
          <span className="pill pill--muted" data-testid="trade-margin-mode">
            {tr.marginMode === "isolated" ? "Isolated" : "Cross"}
          </span>
        </td>
        <td data-label="Size" className="num mono" data-testid="trade-qty">
          {formatQty(tr.qty, fmt)}
        </td>
        <td data-label="Entry" className="num mono" data-testid="trade-entry">
          {formatPrice(tr.entry, fmt)}
        </td>
        <td data-label="Mark" className="num mono" data-testid="trade-mark">
          {formatPrice(t.mark, fmt)}
        </td>
        <td data-label="Liq. price" className="num mono warn" data-testid="trade-liq-price">
          {tr.liquidationPrice !== null && tr.liquidationPrice > 0 ? formatPrice(tr.liquidationPrice, fmt) : "—"}
        </td>
        <td data-label="Margin" className="num mono" data-testid="trade-margin">
          {formatUsd(tr.margin)}
        </td>
        <td data-label="PnL (ROE)" className={`num mono ${tone(t.pnl)}`} data-testid="trade-pnl">
          {formatUsd(t.pnl, { plus: true })}
          {t.roeBps !== null && <span className="roe"> ({formatBps(t.roeBps)})</span>}
        </td>
        <td data-label="TP / SL" className="num mono">
          <span className="up">{tr.takeProfit ? formatPrice(tr.takeProfit, fmt) : "—"}</span>
          {" / "}
          <span className="down">{tr.stopLoss ? formatPrice(tr.stopLoss, fmt) : "—"}</span>
        </td>
        <td className="num actions">
          <div className="actions__inner">
          <button
            type="button"
            className="btn btn--sm btn--ghost"
            onClick={toggleTpsl}
            aria-expanded={tpslOpen}
            aria-controls={`${id}-partial`}
            disabled={busy}
            data-testid="trade-tpsl"
          >
            TP/SL
          </button>
          {isolated && (
            <button
              type="button"
              className="btn btn--sm btn--ghost"
              onClick={() => {
                setMarginOpen((v) => !v);
                setError(null);
              }}
              aria-expanded={marginOpen}
              aria-controls={`${id}-partial`}
              disabled={busy}
              data-testid="trade-add-margin"
            >
              + Margin
            </button>
          )}
          <button
            type="button"
            className="btn btn--sm btn--ghost"
            onClick={() => setPartialOpen((v) => !v)}
            aria-expanded={partialOpen}
            aria-controls={`${id}-partial`}
            disabled={busy}
            data-testid="trade-partial"
          >
            Partial
          </button>
          <button
            type="button"
            className="btn btn--sm btn--outline"
            onClick={() => void close()}
            disabled={busy}
            data-testid="trade-close"
            aria-label={`Close ${long ? "long" : "short"} ${shortSymbol(tr.market)} position at market`}
          >
            {busy ? "Closing…" : "Close"}
          </button>
          </div>
        </td>
      </tr>
      {(partialOpen || tpslOpen || marginOpen || error) && (
        <tr className="trade-row__extra" id={`${id}-partial`}>
          <td colSpan={9}>
            {tpslOpen && (
              <form className="partial tpsl-edit" onSubmit={submitTpsl} noValidate data-testid="trade-tpsl-form">
                <label htmlFor={`${id}-tp`}>Take-profit</label>
                <input
                  id={`${id}-tp`}
                  inputMode="decimal"
                  autoComplete="off"
                  value={tpEdit}
                  placeholder={long ? "above entry" : "below entry"}
                  onChange={(e) => setTpEdit(e.target.value)}
                  aria-invalid={Boolean(tpslCheck.errors.tp)}
                  data-testid="trade-tp-input"
                />
                <label htmlFor={`${id}-sl`}>Stop-loss</label>
                <input
                  id={`${id}-sl`}
                  inputMode="decimal"
                  autoComplete="off"
                  value={slEdit}
                  placeholder={long ? "below entry" : "above entry"}
                  onChange={(e) => setSlEdit(e.target.value)}
                  aria-invalid={Boolean(tpslCheck.errors.sl)}
                  data-testid="trade-sl-input"
                />
                <button type="submit" className="btn btn--sm btn--outline" disabled={busy} data-testid="trade-tpsl-submit">
                  Save
                </button>
                <span className="muted">empty = none · triggers on the mark</span>
                {(tpslCheck.errors.tp || tpslCheck.errors.sl) && (
                  <span className="field__error" data-testid="trade-tpsl-error">
                    {tpslCheck.errors.tp ?? tpslCheck.errors.sl}
                  </span>
                )}
              </form>
            )}
            {marginOpen && marginCheck && (
              <form className="partial" onSubmit={submitMargin} noValidate data-testid="trade-add-margin-form">
                <label htmlFor={`${id}-am`}>Add margin (USD)</label>
                <input
                  id={`${id}-am`}
                  inputMode="decimal"
                  autoComplete="off"
                  value={marginText}
                  placeholder="0.00"
                  onChange={(e) => setMarginText(e.target.value)}
                  aria-invalid={Boolean(marginCheck.error)}
                  data-testid="trade-add-margin-amount"
                />
                <button type="submit" className="btn btn--sm btn--outline" disabled={busy} data-testid="trade-add-margin-submit">
                  Add
                </button>
                <span className="muted">
                  free {formatUsd(balance)}
                  {marginCheck.liquidationPrice !== null && (
                    <>
                      {" · new liq. price "}
                      <span className="mono" data-testid="trade-add-margin-liq">
                        {formatPrice(marginCheck.liquidationPrice, fmt)}
                      </span>
                    </>
                  )}
                </span>
                {marginCheck.error && <span className="field__error">{marginCheck.error}</span>}
              </form>
            )}
            {partialOpen && (
              <form className="partial" onSubmit={submitPartial} noValidate>
                <label htmlFor={`${id}-pq`}>Close quantity</label>
                <input
                  id={`${id}-pq`}
                  inputMode="decimal"
                  autoComplete="off"
                  value={partialText}
                  placeholder={formatQty(market?.qtyStep ?? null, fmt)}
                  onChange={(e) => setPartialText(e.target.value)}
                  aria-invalid={Boolean(partialError)}
                  data-testid="trade-partial-qty"
                />
                <span className="presets">
                  {[25, 50, 75].map((pct) => (
                    <button key={pct} type="button" className="chip" onClick={() => presetPartial(pct)}>
                      {pct}%
                    </button>
                  ))}
                </span>
                <button type="submit" className="btn btn--sm btn--outline" disabled={busy} data-testid="trade-partial-submit">
                  Close part
                </button>
                <span className="muted">of {formatQty(tr.qty, fmt)}</span>
                {partialError && <span className="field__error">{partialError}</span>}
              </form>
            )}
            {error && (
              <p className="form-error" role="alert" data-testid="trade-error">
                {error}
              </p>
            )}
          </td>
        </tr>
      )}
    </>
  );
}
