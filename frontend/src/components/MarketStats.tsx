import type { MarketView } from "../hooks";
import { useNow } from "../hooks";
import { formatBps, formatCountdown, formatFundingRate, formatPrice, shortSymbol } from "../lib/format";
import { spreadBps } from "../lib/ticker";

/** The selected market's quote line: bid, ask, mark, index, 24 h change, funding. */
export function MarketStats({ m }: { m: MarketView }) {
  const now = useNow(1000);
  const chg = m.changeLiveBps;
  const spread = spreadBps(m.bid, m.ask);
  return (
    <section className="stats" aria-label={`${shortSymbol(m.symbol)} quote`}>
      <div className="stats__title">
        <h1 className="stats__sym">{shortSymbol(m.symbol)}</h1>
        <span className="muted">{m.name} perpetual</span>
      </div>
      <dl className="stats__grid">
        <div>
          <dt>Bid</dt>
          <dd className="down mono" data-testid="bid">
            {formatPrice(m.bid, m)}
          </dd>
        </div>
        <div>
          <dt>Ask</dt>
          <dd className="up mono" data-testid="ask">
            {formatPrice(m.ask, m)}
          </dd>
        </div>
        <div>
          <dt>Mark</dt>
          <dd className="mono" data-testid="mark">
            {formatPrice(m.mark, m)}
          </dd>
        </div>
        <div className="stats__opt">
          <dt>Index</dt>
          <dd className="mono">{formatPrice(m.index, m)}</dd>
        </div>
        <div>
          <dt>24h</dt>
          <dd className={`mono ${chg === null || chg === 0 ? "" : chg > 0 ? "up" : "down"}`} data-testid="change-24h">
            {formatBps(chg)}
          </dd>
        </div>
        <div className="stats__opt">
          <dt>Spread</dt>
          <dd className="mono">{spread === null ? "—" : `${spread.toFixed(2)} bps`}</dd>
        </div>
        <div>
          <dt>Funding / next</dt>
          <dd className="mono">
            <span title="Positive: longs pay shorts each interval">{formatFundingRate(m.fundingRate)}</span>{" "}
            <span className="muted">{formatCountdown(m.nextFundingTime ?? NaN, now)}</span>
          </dd>
        </div>
      </dl>
    </section>
  );
}
