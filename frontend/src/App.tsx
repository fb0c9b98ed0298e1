import { useQueryClient } from "@tanstack/react-query";
import { lazy, Suspense, useEffect, type ReactNode } from "react";
import { setUnauthorizedHandler } from "./api/client";
import { keys, useMarkets, useWhoami } from "./api/queries";
import { Header } from "./components/Header";
import { Toasts } from "./components/Toasts";
import { useLiveConnection } from "./live/useLiveConnection";
import { AuthPage } from "./pages/AuthPage";
import { LandingPage } from "./pages/LandingPage";
import { href, navigate, useRoute } from "./router";

// The trade page carries the chart library: load it (and history) on demand so
// the landing and sign-in pages stay small.
const TradePage = lazy(() => import("./pages/TradePage").then((m) => ({ default: m.TradePage })));
const HistoryPage = lazy(() => import("./pages/HistoryPage").then((m) => ({ default: m.HistoryPage })));

export function App() {
  const route = useRoute();
  const qc = useQueryClient();
  const who = useWhoami();
  const user = who.data ?? null;
  const needsAuth = route.name === "trade" || route.name === "history";

  useEffect(() => {
    setUnauthorizedHandler(() => qc.setQueryData(keys.whoami, null));
    return () => setUnauthorizedHandler(null);
  }, [qc]);

  useEffect(() => {
    if (!who.isSuccess) return;
    if (needsAuth && !user) navigate("/signin", { replace: true });
    if ((route.name === "signin" || route.name === "signup") && user) navigate("/trade", { replace: true });
  }, [who.isSuccess, user, needsAuth, route.name]);

  // Live data for signed-in users: subscribe to every market (the picker shows them all).
  const markets = useMarkets(Boolean(user));
  useLiveConnection(Boolean(user), (markets.data ?? []).map((m) => m.symbol));

  // Move focus to the page on navigation so keyboard and screen-reader users land on it.
  useEffect(() => {
    document.getElementById("main")?.focus({ preventScroll: true });
  }, [route.name]);

  let page: ReactNode;
  if (who.isPending) {
    page = <div className="page-loading" aria-busy="true">Loading…</div>;
  } else if (who.isError && needsAuth) {
    page = (
      <div className="page-error" role="alert">
        <p>Cannot reach the server: {(who.error as Error).message}</p>
        <button type="button" className="btn btn--primary" onClick={() => who.refetch()}>
          Try again
        </button>
      </div>
    );
  } else {
    switch (route.name) {
      case "landing":
        page = <LandingPage signedIn={Boolean(user)} />;
        break;
      case "signin":
        page = <AuthPage mode="signin" />;
        break;
      case "signup":
        page = <AuthPage mode="signup" />;
        break;
      case "trade":
        page = user ? <TradePage symbol={route.symbol} /> : null;
        break;
      case "history":
        page = user ? <HistoryPage tab={route.tab} /> : null;
        break;
      default:
        page = (
          <div className="page-error">
            <h1>Page not found</h1>
            <a className="btn btn--primary" href={href("/")}>
              Go home
            </a>
          </div>
        );
    }
  }

  return (
    <div className="app">
      <a
        className="skip-link"
        href="#main"
        onClick={(e) => {
          e.preventDefault();
          document.getElementById("main")?.focus();
        }}
      >
        Skip to content
      </a>
      <Header user={user} route={route} />
      <main id="main" tabIndex={-1} className="main">
        <Suspense fallback={<div className="page-loading" aria-busy="true">Loading…</div>}>{page}</Suspense>
      </main>
      <Toasts />
    </div>
  );
}
