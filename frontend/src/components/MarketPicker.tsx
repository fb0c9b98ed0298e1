import type { MarketView } from "../hooks";
import { formatBps, formatPrice, shortSymbol } from "../lib/format";

/** Market list with live bid/ask and 24 h change; a button per market. */
export function MarketPicker({
  markets,
  selected,
  onSelect,
}: {
  markets: MarketView[];
  selected: string;
  onSelect: (symbol: string) => void;
}) {
  return (
    <nav className="picker" aria-label="Markets">
      <ul className="picker__list">
        {markets.map((m) => {
          const chg = m.changeLiveBps;
          const isSel = m.symbol === selected;
          return (
            <li key={m.symbol}>
              <button
                type="button"
                className={`picker__item${isSel ? " is-selected" : ""}`}
                aria-pressed={isSel}
                onClick={() => onSelect(m.symbol)}
                data-testid={`market-${m.symbol}`}
              >
                <span className="picker__sym">
                  {shortSymbol(m.symbol)}
                  {m.stale && <span className="badge badge--warn" title="No fresh price from the feed">stale</span>}
                </span>
                <span className={`picker__chg ${chg === null || chg === 0 ? "" : chg > 0 ? "up" : "down"}`} data-testid="market-change">
                  {formatBps(chg)}
                </span>
                <span className="picker__quote">
                  <span className="down" data-testid="market-bid" aria-label="Bid">
                    {formatPrice(m.bid, m)}
                  </span>
                  <span className="picker__slash" aria-hidden="true">/</span>
                  <span className="up" data-testid="market-ask" aria-label="Ask">
                    {formatPrice(m.ask, m)}
                  </span>
                </span>
              </button>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}
