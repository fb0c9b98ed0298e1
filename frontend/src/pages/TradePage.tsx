import { useCallback, useEffect, useMemo } from "react";
import { useAccount } from "../api/queries";
import { AccountPanel } from "../components/AccountPanel";
import { MarketPicker } from "../components/MarketPicker";
import { MarketStats } from "../components/MarketStats";
import { OpenOrders } from "../components/OpenOrders";
import { OpenTrades } from "../components/OpenTrades";
import { OrderForm } from "../components/OrderForm";
import { PriceChart } from "../components/PriceChart";
import { useMarketViews } from "../hooks";
import { liveAccount } from "../lib/liveAccount";
import { selectMarks, useLive } from "../live/store";
import { navigate } from "../router";
import { useShallow } from "zustand/react/shallow";

const LAST_MARKET = "opex.market";

export function TradePage({ symbol }: { symbol: string | null }) {
  const { markets, isLoading, error } = useMarketViews(true);
  const account = useAccount(true);
  const marks = useLive(useShallow(selectMarks));

  const remembered = (() => {
    try {
      return localStorage.getItem(LAST_MARKET);
    } catch {
      return null;
    }
  })();
  const selected =
    markets.find((m) => m.symbol === symbol) ??
    markets.find((m) => m.symbol === remembered) ??
    markets[0] ??
    null;

  useEffect(() => {
    if (!selected) return;
    try {
      localStorage.setItem(LAST_MARKET, selected.symbol);
    } catch {
      /* ignore */
    }
    if (symbol !== selected.symbol) navigate(`/trade/${selected.symbol}`, { replace: true });
  }, [selected?.symbol, symbol]);

  const selectMarket = useCallback((s: string) => navigate(`/trade/${s}`), []);

  const mmrBySymbol = useMemo(() => new Map(markets.map((m) => [m.symbol, m.mmrPpm])), [markets]);
  const mmrOf = useCallback((s: string) => mmrBySymbol.get(s) ?? null, [mmrBySymbol]);

  const live = useMemo(
    () => (account.data ? liveAccount(account.data, marks, mmrOf) : null),
    [account.data, marks, mmrOf],
  );

  if (isLoading) return <div className="page-loading" aria-busy="true">Loading markets…</div>;
  if (!selected) {
    return (
      <div className="page-error" role="alert">
        <p>Markets are unavailable{error ? `: ${(error as Error).message}` : "."}</p>
      </div>
    );
  }

  return (
    <div className="trade">
      <div className="trade__picker">
        <MarketPicker markets={markets} selected={selected.symbol} onSelect={selectMarket} />
      </div>
      <div className="trade__stats card">
        <MarketStats m={selected} />
      </div>
      <div className="trade__chart">
        <PriceChart market={selected} trades={live?.trades ?? []} />
      </div>
      <aside className="trade__side" aria-label="Order entry and account">
        <OrderForm market={selected} account={live} mmrOf={mmrOf} />
        <AccountPanel
          account={live}
          loading={account.isLoading}
          error={account.error ? (account.error as Error).message : null}
        />
      </aside>
      <div className="trade__positions">
        <OpenTrades
          trades={live?.trades ?? []}
          markets={markets}
          onSelectMarket={selectMarket}
          loading={account.isLoading}
          balance={live?.balance ?? null}
        />
        <OpenOrders orders={live?.orders ?? []} markets={markets} onSelectMarket={selectMarket} />
      </div>
    </div>
  );
}
