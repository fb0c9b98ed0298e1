import { formatBps, formatUsd } from "../lib/format";
import type { LiveAccount } from "../lib/liveAccount";

/** Margin ratio = maintenance / equity; 100 % is liquidation. */
export function MarginGauge({ ratioBps }: { ratioBps: number }) {
  const pct = Math.max(0, Math.min(100, ratioBps / 100));
  const level = ratioBps >= 8000 ? "danger" : ratioBps >= 5000 ? "warn" : "ok";
  return (
    <div className="gauge" data-testid="account-margin-ratio" data-level={level}>
      <div className="gauge__head">
        <span id="gauge-label">Margin ratio</span>
        <span className={`mono gauge__value gauge__value--${level}`}>{formatBps(ratioBps, { plus: false })}</span>
      </div>
      <div
        className="gauge__track"
        role="meter"
        aria-labelledby="gauge-label"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Math.round(pct * 100) / 100}
        aria-valuetext={`${formatBps(ratioBps, { plus: false })} of the liquidation level`}
      >
        <div className={`gauge__fill gauge__fill--${level}`} style={{ width: `${pct}%` }} />
      </div>
      <p className="gauge__hint muted">Cross positions are liquidated at 100%.</p>
    </div>
  );
}

export function AccountPanel({ account, loading, error }: { account: LiveAccount | null; loading: boolean; error: string | null }) {
  return (
    <section className="card account" aria-labelledby="account-title">
      <div className="card__head">
        <h2 id="account-title">Account</h2>
        {account && !account.live && account.trades.length > 0 && (
          <span className="muted small" title="Figures as of the last account update">
            as of last update
          </span>
        )}
      </div>
      {error && !account ? (
        <p className="form-error" role="alert">
          {error}
        </p>
      ) : !account ? (
        <p className="empty">{loading ? "Loading account…" : "—"}</p>
      ) : (
        <>
          {account.marginWarning && (
            <p className="margin-warning" role="alert" data-testid="account-margin-warning">
              <strong>Margin warning:</strong> your cross margin ratio reached 80%. At 100% cross positions are
              liquidated — close or reduce them to lower it.
            </p>
          )}
          <dl className="kv">
            <div>
              <dt>Equity</dt>
              <dd className="mono big" data-testid="account-equity">
                {formatUsd(account.equity)}
              </dd>
            </div>
            <div>
              <dt>Balance</dt>
              <dd className="mono" data-testid="account-balance">
                {formatUsd(account.balance)}
              </dd>
            </div>
            <div>
              <dt>Unrealized PnL</dt>
              <dd
                className={`mono ${account.unrealizedPnl > 0 ? "up" : account.unrealizedPnl < 0 ? "down" : ""}`}
                data-testid="account-upnl"
              >
                {formatUsd(account.unrealizedPnl, { plus: true })}
              </dd>
            </div>
            <div>
              <dt>Margin used</dt>
              <dd className="mono" data-testid="account-margin-used">
                {formatUsd(account.marginUsed)}
              </dd>
            </div>
            <div>
              <dt>Available</dt>
              <dd className="mono" data-testid="account-available">
                {formatUsd(account.available)}
              </dd>
            </div>
            <div>
              <dt>Maintenance</dt>
              <dd className="mono" data-testid="account-maintenance">
                {formatUsd(account.maintenance)}
              </dd>
            </div>
            {account.reserved > 0 && (
              <div>
                <dt title="Margin and fees held by resting limit orders: not in the balance or the equity">In orders</dt>
                <dd className="mono" data-testid="account-reserved">
                  {formatUsd(account.reserved)}
                </dd>
              </div>
            )}
          </dl>
          <MarginGauge ratioBps={account.marginRatioBps} />
        </>
      )}
    </section>
  );
}
