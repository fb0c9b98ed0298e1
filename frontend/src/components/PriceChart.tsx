import {
  CandlestickSeries,
  ColorType,
  createChart,
  CrosshairMode,
  LineStyle,
  type CandlestickData,
  type IChartApi,
  type IPriceLine,
  type ISeriesApi,
  type UTCTimestamp,
} from "lightweight-charts";
import { useEffect, useRef, useState } from "react";
import { useCandles } from "../api/queries";
import type { MarketView } from "../hooks";
import { applyPrice, INTERVALS, type Candle, type Interval } from "../lib/candles";
import { PRICE_DECIMALS } from "../lib/fixed";
import { shortSymbol } from "../lib/format";
import type { LiveTrade } from "../lib/liveAccount";
import { useLive } from "../live/store";

const SCALE = 10 ** PRICE_DECIMALS;
const UP = "#22c55e";
const DOWN = "#ef4444";

function toBar(c: Candle): CandlestickData<UTCTimestamp> {
  return { time: c.time as UTCTimestamp, open: c.open / SCALE, high: c.high / SCALE, low: c.low / SCALE, close: c.close / SCALE };
}

/** Oldest first, one candle per time (the chart library requires both). */
function clean(candles: Candle[]): Candle[] {
  const sorted = [...candles].sort((a, b) => a.time - b.time);
  const out: Candle[] = [];
  for (const c of sorted) {
    if (out.length && out[out.length - 1].time === c.time) out[out.length - 1] = c;
    else out.push(c);
  }
  return out;
}

const STORAGE_KEY = "opex.chart.interval";

function initialInterval(): Interval {
  try {
    const v = localStorage.getItem(STORAGE_KEY);
    if (v && (INTERVALS as readonly string[]).includes(v)) return v as Interval;
  } catch {
    /* storage may be unavailable */
  }
  return "1m";
}

/** Candle chart (GET /candles) whose last candle follows the live mark; entry and liquidation lines for open trades. */
export function PriceChart({ market, trades }: { market: MarketView; trades: LiveTrade[] }) {
  const [interval, setIntervalState] = useState<Interval>(initialInterval);
  const candles = useCandles(market.symbol, interval);
  const boxRef = useRef<HTMLDivElement>(null);
  const chartRef = useRef<IChartApi | null>(null);
  const seriesRef = useRef<ISeriesApi<"Candlestick"> | null>(null);
  const lastRef = useRef<Candle | null>(null);

  function chooseInterval(i: Interval) {
    setIntervalState(i);
    try {
      localStorage.setItem(STORAGE_KEY, i);
    } catch {
      /* ignore */
    }
  }

  useEffect(() => {
    const el = boxRef.current;
    if (!el) return;
    const chart = createChart(el, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: "transparent" },
        textColor: "#8b95a7",
        fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
        fontSize: 11,
      },
      grid: { vertLines: { color: "rgba(139,149,167,0.08)" }, horzLines: { color: "rgba(139,149,167,0.08)" } },
      crosshair: { mode: CrosshairMode.Normal },
      rightPriceScale: { borderColor: "rgba(139,149,167,0.2)" },
      timeScale: { borderColor: "rgba(139,149,167,0.2)", timeVisible: true, secondsVisible: false, rightOffset: 4 },
    });
    const series = chart.addSeries(CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      borderVisible: false,
      wickUpColor: UP,
      wickDownColor: DOWN,
    });
    chartRef.current = chart;
    seriesRef.current = series;
    return () => {
      chart.remove();
      chartRef.current = null;
      seriesRef.current = null;
    };
  }, []);

  // Price axis precision follows the market's tick size.
  useEffect(() => {
    seriesRef.current?.applyOptions({
      priceFormat: { type: "price", precision: market.priceDecimals, minMove: market.tickSize / SCALE },
    });
  }, [market.priceDecimals, market.tickSize]);

  // History from the API.
  useEffect(() => {
    const series = seriesRef.current;
    if (!series) return;
    const data = clean(candles.data ?? []);
    series.setData(data.map(toBar));
    lastRef.current = data.length ? data[data.length - 1] : null;
    if (data.length) chartRef.current?.timeScale().scrollToRealTime();
  }, [candles.data]);

  // The last candle moves with every pushed mark price.
  useEffect(() => {
    let lastTs = -1;
    return useLive.subscribe((s) => {
      const p = s.prices[market.symbol];
      const series = seriesRef.current;
      if (!p || p.mark === null || !series || p.ts === lastTs) return;
      lastTs = p.ts;
      const bar = applyPrice(lastRef.current, p.mark, p.ts, interval);
      if (!bar) return;
      lastRef.current = bar;
      series.update(toBar(bar));
    });
  }, [market.symbol, interval, candles.data]);

  // Entry and liquidation lines of this market's open trades.
  const lineKey = trades
    .filter((t) => t.trade.market === market.symbol)
    .map((t) => `${t.trade.id}:${t.trade.entry}:${t.trade.liquidationPrice}:${t.trade.side}`)
    .join("|");
  useEffect(() => {
    const series = seriesRef.current;
    if (!series || !lineKey) return;
    const lines: IPriceLine[] = [];
    for (const part of lineKey.split("|")) {
      const [, entry, liq, side] = part.split(":");
      const long = side === "1";
      lines.push(
        series.createPriceLine({
          price: Number(entry) / SCALE,
          color: long ? UP : DOWN,
          lineWidth: 1,
          lineStyle: LineStyle.Dashed,
          axisLabelVisible: true,
          title: long ? "Long entry" : "Short entry",
        }),
      );
      if (liq !== "null" && Number(liq) > 0) {
        lines.push(
          series.createPriceLine({
            price: Number(liq) / SCALE,
            color: "#f59e0b",
            lineWidth: 1,
            lineStyle: LineStyle.Dotted,
            axisLabelVisible: true,
            title: "Liq.",
          }),
        );
      }
    }
    return () => lines.forEach((l) => series.removePriceLine(l));
  }, [lineKey]);

  return (
    <section className="card chart" aria-label={`${shortSymbol(market.symbol)} price chart`}>
      <div className="chart__bar">
        <div className="segmented segmented--sm" role="group" aria-label="Candle interval">
          {INTERVALS.map((i) => (
            <button
              key={i}
              type="button"
              aria-pressed={i === interval}
              className={i === interval ? "is-active" : ""}
              onClick={() => chooseInterval(i)}
              data-testid={`chart-interval-${i}`}
            >
              {i}
            </button>
          ))}
        </div>
        <span className="muted chart__note">
          {candles.isLoading ? "Loading candles…" : candles.isError ? "Candles unavailable" : `${interval} candles`}
        </span>
      </div>
      <div className="chart__canvas" ref={boxRef} data-testid="price-chart" role="img" aria-label={`Candlestick chart of ${shortSymbol(market.symbol)}, ${interval} candles`} />
    </section>
  );
}
