import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { ApiError } from "../api/client";
import { api } from "../api/endpoints";
import { keys } from "../api/queries";
import { formatDateTime, formatPrice, formatQty, formatUsd, shortSymbol, type MarketFormat } from "../lib/format";
import type { Market, RestingOrder } from "../lib/model";
import { toast } from "../live/toasts";

const FALLBACK_FMT: MarketFormat = { priceDecimals: 2, qtyDecimals: 4 };

/** Resting limit orders, each with a cancel button (DELETE /orders/{id}). */
export function OpenOrders({
  orders,
  markets,
  onSelectMarket,
}: {
  orders: RestingOrder[];
  markets: Market[];
  onSelectMarket: (symbol: string) => void;
}) {
  const bySymbol = new Map(markets.map((m) => [m.symbol, m]));
  return (
    <section className="card orders" aria-labelledby="orders-title">
      <div className="card__head">
        <h2 id="orders-title">
          Open orders <span className="count">{orders.length}</span>
        </h2>
      </div>
      {orders.length === 0 ? (
        <p className="empty" data-testid="open-orders-empty">
          No resting orders. Choose Limit in the order form to place one.
        </p>
      ) : (
        <div className="table-wrap">
          <table className="table table--cards">
            <thead>
              <tr>
                <th scope="col">Market</th>
                <th scope="col" className="num">Size</th>
                <th scope="col" className="num">Limit price</th>
                <th scope="col" className="num">Reserved</th>
                <th scope="col" className="num">Expires</th>
                <th scope="col" className="num">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {orders.map((o) => (
                <OrderRow key={o.id} order={o} market={bySymbol.get(o.market)} onSelectMarket={onSelectMarket} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function OrderRow({
  order: o,
  market,
  onSelectMarket,
}: {
  order: RestingOrder;
  market: Market | undefined;
  onSelectMarket: (symbol: string) => void;
}) {
  const qc = useQueryClient();
  const fmt = market ?? FALLBACK_FMT;
  const long = o.side > 0;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function cancel() {
    setBusy(true);
    setError(null);
    try {
      const reply = await api.cancelOrder(o.id);
      toast({
        key: `order:${o.id}`,
        tone: "info",
        title: "Order cancelled",
        body: `${long ? "Buy" : "Sell"} ${formatQty(o.qty, fmt)} ${shortSymbol(o.market)} @ ${formatPrice(o.limitPrice, fmt)}${
          reply.usdBalance ? ` · balance ${formatUsd(reply.usdBalance.balance)}` : ""
        }`,
      });
    } catch (err) {
      const msg = err instanceof ApiError ? err.message : "The cancel could not be sent.";
      setError(msg);
      toast({ tone: "error", title: "Cancel failed", body: msg });
    } finally {
      setBusy(false);
      void qc.invalidateQueries({ queryKey: keys.account });
    }
  }

  return (
    <>
      <tr
        className={`trade-row trade-row--${long ? "long" : "short"}`}
        data-testid="order-row"
        data-order-id={o.id}
        data-market={o.market}
      >
        <td data-label="Market">
          <button type="button" className="linklike" onClick={() => onSelectMarket(o.market)} title="Show this market">
            <strong>{shortSymbol(o.market)}</strong>
          </button>{" "}
          <span className={`pill ${long ? "pill--long" : "pill--short"}`} data-testid="order-side">
            {long ? "Buy" : "Sell"}
            {o.leverage !== null ? ` ${o.leverage}×` : ""}
          </span>{" "}
          <span className="pill pill--muted">
            {o.reduceOnly ? "Reduce-only" : o.marginMode === "isolated" ? "Isolated" : "Cross"}
          </span>
        </td>
        <td data-label="Size" className="num mono" data-testid="order-qty">
          {formatQty(o.qty, fmt)}
        </td>
        <td data-label="Limit price" className="num mono" data-testid="order-limit">
          {formatPrice(o.limitPrice, fmt)}
        </td>
        <td data-label="Reserved" className="num mono" data-testid="order-reserved">
          {o.reduceOnly ? "—" : formatUsd(o.reservedMargin + o.reservedFee)}
        </td>
        <td data-label="Expires" className="num mono" data-testid="order-expires">
          {o.expiresAt !== null ? formatDateTime(o.expiresAt) : "GTC"}
        </td>
        <td className="num actions">
          <div className="actions__inner">
            <button
              type="button"
              className="btn btn--sm btn--outline"
              onClick={() => void cancel()}
              disabled={busy}
              data-testid="order-cancel"
              aria-label={`Cancel ${long ? "buy" : "sell"} order on ${shortSymbol(o.market)} at ${formatPrice(o.limitPrice, fmt)}`}
            >
              {busy ? "Cancelling…" : "Cancel"}
            </button>
          </div>
        </td>
      </tr>
      {error && (
        <tr className="trade-row__extra">
          <td colSpan={6}>
            <p className="form-error" role="alert" data-testid="order-error-row">
              {error}
            </p>
          </td>
        </tr>
      )}
    </>
  );
}
