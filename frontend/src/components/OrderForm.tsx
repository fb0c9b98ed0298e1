import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useId, useMemo, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import { api } from "../api/endpoints";
import { keys } from "../api/queries";
import { features } from "../config/features";
import type { MarketView } from "../hooks";
import type { CrossPosition, MarginMode, Side } from "../lib/calc";
import { formatUnits, QTY_DECIMALS } from "../lib/fixed";
import { baseAsset, formatPrice, formatQty, formatUsd, shortSymbol } from "../lib/format";
import type { LiveAccount } from "../lib/liveAccount";
import { normalizeTrade } from "../lib/model";
import { checkOrder, type OrderDraft, type OrderType } from "../lib/orderForm";
import { toast } from "../live/toasts";

const SIZE_PRESETS = [25, 50, 75, 100];
const SLIPPAGE_PRESETS = ["0.1", "0.5", "1"];
/** good-till-time choices for a limit order (ms; 0 = until cancelled) */
const EXPIRY_CHOICES: { value: string; label: string; ms: number }[] = [
  { value: "gtc", label: "Until cancelled", ms: 0 },
  { value: "1h", label: "1 hour", ms: 3_600_000 },
  { value: "1d", label: "1 day", ms: 86_400_000 },
  { value: "7d", label: "7 days", ms: 7 * 86_400_000 },
];

export function OrderForm({
  market,
  account,
  mmrOf,
}: {
  market: MarketView;
  account: LiveAccount | null;
  mmrOf: (symbol: string) => number | null;
}) {
  const qc = useQueryClient();
  const id = useId();
  const [side, setSide] = useState<Side>(1);
  const [orderType, setOrderType] = useState<OrderType>("market");
  const [qtyText, setQtyText] = useState("");
  const [leverage, setLeverage] = useState(() => Math.min(10, market.maxLeverage));
  const [marginMode, setMarginMode] = useState<MarginMode>("cross");
  const [slippageText, setSlippageText] = useState("0.5");
  const [limitPriceText, setLimitPriceText] = useState("");
  const [tpsl, setTpsl] = useState(false);
  const [tpText, setTpText] = useState("");
  const [slText, setSlText] = useState("");
  const [postOnly, setPostOnly] = useState(false);
  const [expiry, setExpiry] = useState("gtc");
  const [busy, setBusy] = useState(false);
  const [submitError, setSubmitError] = useState<string | null>(null);
  const [touched, setTouched] = useState(false);

  // A new market: its own steps and leverage cap.
  useEffect(() => {
    setQtyText("");
    setTpText("");
    setSlText("");
    setLimitPriceText("");
    setSubmitError(null);
    setTouched(false);
    setLeverage((l) => Math.min(l, market.maxLeverage));
  }, [market.symbol, market.maxLeverage]);

  const crossTrades: CrossPosition[] = useMemo(
    () =>
      (account?.trades ?? [])
        .filter((t) => t.trade.marginMode === "cross" && t.mark !== null && mmrOf(t.trade.market) !== null)
        .map((t) => ({
          side: t.trade.side,
          qty: t.trade.qty,
          entry: t.trade.entry,
          margin: t.trade.margin,
          mark: t.mark!,
          mmrPpm: mmrOf(t.trade.market)!,
        })),
    [account?.trades, mmrOf],
  );

  const draft: OrderDraft = {
    side,
    orderType,
    qtyText,
    leverage,
    marginMode,
    slippageText,
    limitPriceText,
    // the engine takes TP/SL with a market order only; set them on the trade once it fills
    tpText: tpsl && orderType === "market" ? tpText : "",
    slText: tpsl && orderType === "market" ? slText : "",
    postOnly: orderType === "limit" && postOnly,
    expiresInMs: orderType === "limit" ? (EXPIRY_CHOICES.find((c) => c.value === expiry)?.ms ?? 0) : 0,
  };
  const check = checkOrder(draft, {
    market,
    balance: account?.balance ?? null,
    available: account?.available ?? null,
    crossTrades,
  });
  const p = check.preview;
  const long = side > 0;
  const base = baseAsset(market.symbol);

  function setSizePct(pct: number) {
    const step = market.qtyStep;
    const q = Math.floor((check.maxQty * pct) / 100 / step) * step;
    setQtyText(q > 0 ? formatUnits(q, QTY_DECIMALS, market.qtyDecimals, { group: false }) : "");
    setTouched(true);
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    setTouched(true);
    setSubmitError(null);
    if (orderType === "limit") {
      await submitLimit();
      return;
    }
    if (!check.body) {
      if (!qtyText.trim()) setSubmitError("Enter a quantity.");
      return;
    }
    setBusy(true);
    try {
      const reply = await api.openTrade(check.body);
      const order = reply.order ? normalizeTrade(reply.order) : null;
      toast({
        key: `open:${reply.orderId ?? order?.id ?? ""}`,
        tone: long ? "long" : "short",
        title: "Order filled",
        body: order
          ? `${long ? "Long" : "Short"} ${formatQty(order.qty, market)} ${shortSymbol(market.symbol)} opened @ ${formatPrice(order.entry, market)}`
          : reply.message,
      });
      setTpText("");
      setSlText("");
      setTouched(false);
    } catch (err) {
      const msg = err instanceof ApiError ? err.message : "The order could not be sent.";
      setSubmitError(msg);
      toast({ tone: "error", title: "Order rejected", body: msg });
    } finally {
      setBusy(false);
      // The push normally brings the new account first; this covers a dropped socket.
      void qc.invalidateQueries({ queryKey: keys.account });
    }
  }

  async function submitLimit() {
    // recomputed at submit time, so a good-till-time counts from now
    const body = checkOrder(draft, {
      market,
      balance: account?.balance ?? null,
      available: account?.available ?? null,
      crossTrades,
    }).limitBody;
    if (!body) {
      if (!qtyText.trim()) setSubmitError("Enter a quantity.");
      else if (!limitPriceText.trim()) setSubmitError("Enter a limit price.");
      return;
    }
    setBusy(true);
    try {
      const reply = await api.placeOrder(body);
      const sideText = long ? "Long" : "Short";
      const qty = check.qty !== null ? formatQty(check.qty, market) : String(body.quantity);
      if (reply.trade) {
        const trade = normalizeTrade(reply.trade);
        toast({
          key: `open:${trade.id}`,
          tone: long ? "long" : "short",
          title: "Order filled at once",
          body: `${sideText} ${formatQty(trade.qty, market)} ${shortSymbol(market.symbol)} opened @ ${formatPrice(trade.entry, market)} (taker)`,
        });
      } else {
        toast({
          key: `order:${reply.order?.id ?? ""}`,
          tone: "info",
          title: "Limit order placed",
          body: `${sideText} ${qty} ${shortSymbol(market.symbol)} @ ${formatPrice(body.limitPrice, market)}`,
        });
      }
      setTouched(false);
    } catch (err) {
      const msg = err instanceof ApiError ? err.message : "The order could not be sent.";
      setSubmitError(msg);
      toast({ tone: "error", title: "Order rejected", body: msg });
    } finally {
      setBusy(false);
      void qc.invalidateQueries({ queryKey: keys.account });
    }
  }

  const showErr = (k: keyof typeof check.errors) => (touched || k === "tp" || k === "sl" ? check.errors[k] : undefined);
  const qtyErr = qtyText.trim() ? check.errors.qty : undefined;
  const levMarks = [1, 5, 10, 25, 50, 100].filter((x) => x <= market.maxLeverage);
  if (!levMarks.includes(market.maxLeverage)) levMarks.push(market.maxLeverage);

  return (
    <section className="card order" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`} className="visually-hidden">
        Place order on {shortSymbol(market.symbol)}
      </h2>
      <form onSubmit={submit} noValidate data-testid="order-form">
        <div className="side-toggle" role="group" aria-label="Side">
          <button
            type="button"
            className={`side-toggle__btn side-toggle__btn--long${long ? " is-active" : ""}`}
            aria-pressed={long}
            onClick={() => setSide(1)}
            data-testid="order-side-long"
          >
            Long
          </button>
          <button
            type="button"
            className={`side-toggle__btn side-toggle__btn--short${!long ? " is-active" : ""}`}
            aria-pressed={!long}
            onClick={() => setSide(-1)}
            data-testid="order-side-short"
          >
            Short
          </button>
        </div>

        <div className="tabs" role="group" aria-label="Order type">
          <button
            type="button"
            className={orderType === "market" ? "is-active" : ""}
            aria-pressed={orderType === "market"}
            onClick={() => setOrderType("market")}
            data-testid="order-type-market"
          >
            Market
          </button>
          {features.limitOrders && (
            <button
              type="button"
              className={orderType === "limit" ? "is-active" : ""}
              aria-pressed={orderType === "limit"}
              onClick={() => setOrderType("limit")}
              data-testid="order-type-limit"
            >
              Limit
            </button>
          )}
        </div>

        <div className="segmented" role="group" aria-label="Margin mode">
          {(["cross", "isolated"] as const).map((mm) => (
            <button
              key={mm}
              type="button"
              className={marginMode === mm ? "is-active" : ""}
              aria-pressed={marginMode === mm}
              onClick={() => setMarginMode(mm)}
              data-testid={`order-margin-${mm}`}
            >
              {mm === "cross" ? "Cross" : "Isolated"}
            </button>
          ))}
        </div>

        {orderType === "limit" && (
          <div className="field">
            <label htmlFor={`${id}-limit`}>Limit price (USD)</label>
            <input
              id={`${id}-limit`}
              inputMode="decimal"
              autoComplete="off"
              value={limitPriceText}
              onChange={(e) => setLimitPriceText(e.target.value)}
              aria-invalid={Boolean(showErr("price"))}
              data-testid="order-limit-price"
            />
            {(showErr("price") || (postOnly && check.errors.price)) && (
              <p className="field__error" data-testid="order-price-error">
                {check.errors.price}
              </p>
            )}
            <div className="field__row limit-opts">
              <label className="check">
                <input
                  type="checkbox"
                  checked={postOnly}
                  onChange={(e) => setPostOnly(e.target.checked)}
                  data-testid="order-post-only"
                />
                Post-only
              </label>
              <label className="limit-opts__expiry">
                <span className="muted">Expires</span>{" "}
                <select value={expiry} onChange={(e) => setExpiry(e.target.value)} data-testid="order-expiry">
                  {EXPIRY_CHOICES.map((c) => (
                    <option key={c.value} value={c.value}>
                      {c.label}
                    </option>
                  ))}
                </select>
              </label>
            </div>
          </div>
        )}

        <div className="field">
          <label htmlFor={`${id}-qty`}>
            Quantity <span className="muted">({base})</span>
          </label>
          <div className="input-affix">
            <input
              id={`${id}-qty`}
              inputMode="decimal"
              autoComplete="off"
              placeholder={formatQty(market.qtyStep, market)}
              value={qtyText}
              onChange={(e) => setQtyText(e.target.value)}
              onBlur={() => qtyText && setTouched(true)}
              aria-invalid={Boolean(qtyErr)}
              aria-describedby={`${id}-qty-help`}
              data-testid="order-quantity"
            />
            <span className="input-affix__text" aria-hidden="true">
              {base}
            </span>
          </div>
          <div className="presets" role="group" aria-label="Size as a share of what is available">
            {SIZE_PRESETS.map((pct) => (
              <button key={pct} type="button" className="chip" onClick={() => setSizePct(pct)} disabled={check.maxQty <= 0} data-testid={`order-size-${pct}`}>
                {pct}%
              </button>
            ))}
          </div>
          <p id={`${id}-qty-help`} className={qtyErr ? "field__error" : "field__help"}>
            {qtyErr ?? `Step ${formatQty(market.qtyStep, market)} · max ${formatQty(check.maxQty, market)} ${base}`}
          </p>
        </div>

        <div className="field">
          <div className="field__row">
            <label htmlFor={`${id}-lev`}>Leverage</label>
            <span className="lev-value mono" data-testid="order-leverage-value">
              {leverage}×
            </span>
          </div>
          <input
            id={`${id}-lev`}
            type="range"
            min={1}
            max={market.maxLeverage}
            step={1}
            value={leverage}
            onChange={(e) => setLeverage(Number(e.target.value))}
            aria-valuetext={`${leverage} times`}
            className={`range ${long ? "range--long" : "range--short"}`}
            data-testid="order-leverage"
          />
          <div className="presets" role="group" aria-label="Leverage presets">
            {levMarks.map((x) => (
              <button
                key={x}
                type="button"
                className={`chip${leverage === x ? " is-active" : ""}`}
                onClick={() => setLeverage(x)}
                aria-pressed={leverage === x}
              >
                {x}×
              </button>
            ))}
          </div>
          {check.errors.leverage && <p className="field__error">{check.errors.leverage}</p>}
        </div>

        {orderType === "market" && (
          <div className="field">
            <label htmlFor={`${id}-slip`}>Max slippage</label>
            <div className="field__row">
              <div className="input-affix input-affix--narrow">
                <input
                  id={`${id}-slip`}
                  inputMode="decimal"
                  autoComplete="off"
                  value={slippageText}
                  onChange={(e) => setSlippageText(e.target.value)}
                  aria-invalid={Boolean(check.errors.slippage)}
                  data-testid="order-slippage"
                />
                <span className="input-affix__text" aria-hidden="true">
                  %
                </span>
              </div>
              <div className="presets" role="group" aria-label="Slippage presets">
                {SLIPPAGE_PRESETS.map((s) => (
                  <button
                    key={s}
                    type="button"
                    className={`chip${slippageText === s ? " is-active" : ""}`}
                    aria-pressed={slippageText === s}
                    onClick={() => setSlippageText(s)}
                  >
                    {s}%
                  </button>
                ))}
              </div>
            </div>
            {check.errors.slippage && <p className="field__error">{check.errors.slippage}</p>}
          </div>
        )}

        {orderType === "market" && (
        <div className="field">
          <label className="check">
            <input type="checkbox" checked={tpsl} onChange={(e) => setTpsl(e.target.checked)} data-testid="order-tpsl-toggle" />
            Take-profit / stop-loss
          </label>
          {tpsl && (
            <div className="tpsl">
              <div>
                <label htmlFor={`${id}-tp`}>Take-profit (mark)</label>
                <input
                  id={`${id}-tp`}
                  inputMode="decimal"
                  autoComplete="off"
                  placeholder={long ? "above entry" : "below entry"}
                  value={tpText}
                  onChange={(e) => setTpText(e.target.value)}
                  aria-invalid={Boolean(check.errors.tp)}
                  data-testid="order-tp"
                />
                {check.errors.tp && <p className="field__error">{check.errors.tp}</p>}
              </div>
              <div>
                <label htmlFor={`${id}-sl`}>Stop-loss (mark)</label>
                <input
                  id={`${id}-sl`}
                  inputMode="decimal"
                  autoComplete="off"
                  placeholder={long ? "below entry" : "above entry"}
                  value={slText}
                  onChange={(e) => setSlText(e.target.value)}
                  aria-invalid={Boolean(check.errors.sl)}
                  data-testid="order-sl"
                />
                {check.errors.sl && <p className="field__error">{check.errors.sl}</p>}
              </div>
            </div>
          )}
        </div>
        )}

        <dl className="summary" aria-label="Order summary" aria-live="polite">
          <div>
            <dt>{orderType === "limit" ? "Limit price" : long ? "Fill at ask" : "Fill at bid"}</dt>
            <dd className="mono" data-testid="order-price">
              {formatPrice(check.price, market)}
            </dd>
          </div>
          <div>
            <dt>Notional</dt>
            <dd className="mono" data-testid="order-notional">
              {p ? formatUsd(p.notional) : "—"}
            </dd>
          </div>
          <div>
            <dt>{orderType === "limit" && !check.marketable ? "Margin reserved" : "Margin required"}</dt>
            <dd className="mono" data-testid="order-margin">
              {p ? formatUsd(p.initialMargin, { decimals: 4 }) : "—"}
            </dd>
          </div>
          <div>
            <dt>
              Fee <span className="muted">({orderType === "limit" && !check.marketable ? "maker" : "taker"} {(orderType === "limit" && !check.marketable ? market.makerFeePpm : market.takerFeePpm) / 100} bps)</span>
            </dt>
            <dd className="mono" data-testid="order-fee">
              {p ? formatUsd(p.fee, { decimals: 4 }) : "—"}
            </dd>
          </div>
          <div>
            <dt>Est. liquidation price</dt>
            <dd className="mono warn" data-testid="order-liq-price">
              {p ? (p.liquidationPrice && p.liquidationPrice > 0 ? formatPrice(p.liquidationPrice, market) : "None") : "—"}
            </dd>
          </div>
          <div>
            <dt>Available</dt>
            <dd className="mono" data-testid="order-available">
              {formatUsd(account?.available ?? null)}
            </dd>
          </div>
        </dl>

        {check.warnings.map((w) => (
          <p key={w} className="form-warn">
            {w}
          </p>
        ))}
        {touched && check.errors.funds && (
          <p className="form-error" role="alert">
            {check.errors.funds}
          </p>
        )}
        {submitError && (
          <p className="form-error" role="alert" data-testid="order-error">
            {submitError}
          </p>
        )}

        <button
          type="submit"
          className={`btn btn--block btn--lg ${long ? "btn--long" : "btn--short"}`}
          disabled={busy || (orderType === "limit" && !features.limitOrders)}
          data-testid="order-submit"
        >
          {busy
            ? "Sending…"
            : `${long ? "Buy / Long" : "Sell / Short"} ${qtyText && check.qty ? formatQty(check.qty, market) + " " : ""}${base}`}
        </button>
        <p className="field__help order__foot">
          {marginMode === "cross"
            ? "Cross: your whole balance backs this position."
            : "Isolated: only this position's margin is at risk."}{" "}
          {orderType === "limit"
            ? `A limit ${long ? "buy fills when the ask" : "sell fills when the bid"} reaches your price; its margin and maker fee are reserved until then.`
            : `Market orders fill at the ${long ? "ask" : "bid"} if it is within your slippage of the price shown.`}
        </p>
      </form>
    </section>
  );
}
