import { useMarketViews } from "../hooks";
import { formatBps, formatPrice, shortSymbol } from "../lib/format";
import { href } from "../router";

export function LandingPage({ signedIn }: { signedIn: boolean }) {
  // /markets may need a session; when it does, the table simply isn't shown.
  const { markets } = useMarketViews(true);
  return (
    <div className="landing">
      <section className="hero">
        <h1 className="hero__title">
          Trade crypto perpetuals.
          <br />
          <span className="hero__accent">Risk nothing.</span>
        </h1>
        <p className="hero__lead">
          Opex is a paper-trading venue for BTC, ETH and SOL perpetual futures on live market prices — with
          leverage up to 100×, cross and isolated margin, funding, take-profit and stop-loss, and a real
          liquidation engine. Every account starts with $5,000.00 of simulated money.
        </p>
        <div className="hero__cta">
          {signedIn ? (
            <a className="btn btn--primary btn--lg" href={href("/trade")} data-testid="landing-trade">
              Go to trading
            </a>
          ) : (
            <>
              <a className="btn btn--primary btn--lg" href={href("/signup")} data-testid="landing-signup">
                Create free account
              </a>
              <a className="btn btn--ghost btn--lg" href={href("/signin")} data-testid="landing-signin">
                Sign in
              </a>
            </>
          )}
        </div>
      </section>

      {markets.length > 0 && (
        <section className="card landing__markets" aria-label="Markets">
          <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Market</th>
                <th scope="col" className="num">Mark</th>
                <th scope="col" className="num">24h</th>
                <th scope="col" className="num">Max leverage</th>
              </tr>
            </thead>
            <tbody>
              {markets.map((m) => (
                <tr key={m.symbol}>
                  <td>
                    <strong>{shortSymbol(m.symbol)}</strong> <span className="muted landing__name">{m.name}</span>
                  </td>
                  <td className="num">{formatPrice(m.mark, m)}</td>
                  <td className={`num ${tone(m.changeLiveBps)}`}>{formatBps(m.changeLiveBps)}</td>
                  <td className="num">{m.maxLeverage}×</td>
                </tr>
              ))}
            </tbody>
          </table>
          </div>
        </section>
      )}

      <section className="features" aria-label="How Opex works">
        <div className="feature">
          <h2>Real mechanics</h2>
          <p>Fills at the bid and ask, PnL and liquidation on the mark price, taker fees and hourly funding — the way a real perps venue works.</p>
        </div>
        <div className="feature">
          <h2>Cross or isolated</h2>
          <p>Back every position with your whole balance, or fence one trade off with its own margin. See the liquidation price before you click.</p>
        </div>
        <div className="feature">
          <h2>Live, all the time</h2>
          <p>Prices, fills and liquidations stream to your screen as they happen; your account is always current, no reload needed.</p>
        </div>
      </section>
    </div>
  );
}

function tone(v: number | null): string {
  if (v === null || v === 0) return "";
  return v > 0 ? "up" : "down";
}
