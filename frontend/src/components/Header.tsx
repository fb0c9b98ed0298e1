import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api } from "../api/endpoints";
import { keys } from "../api/queries";
import type { WireUser } from "../api/types";
import { toast } from "../live/toasts";
import { href, navigate, type Route } from "../router";
import { ConnStatus } from "./ConnStatus";

export function Header({ user, route }: { user: WireUser | null; route: Route }) {
  const qc = useQueryClient();
  const [busy, setBusy] = useState(false);

  async function logout() {
    setBusy(true);
    try {
      await api.logout();
    } catch (err) {
      // The cookie may already be gone; the session ends locally either way.
      console.warn("logout:", err);
    } finally {
      setBusy(false);
      qc.setQueryData(keys.whoami, null);
      qc.removeQueries({ predicate: (q) => q.queryKey[0] !== "whoami" && q.queryKey[0] !== "config" });
      navigate("/");
      toast({ tone: "info", title: "Signed out" });
    }
  }

  const current = (name: Route["name"]) => (route.name === name ? "page" : undefined);

  return (
    <header className="topbar">
      <a className="brand" href={href(user ? "/trade" : "/")} aria-label="Opex home">
        <span className="brand__mark" aria-hidden="true">◆</span>
        <span className="brand__name">Opex</span>
        <span className="brand__tag">paper perps</span>
      </a>
      {user ? (
        <>
          <nav className="topnav" aria-label="Main">
            <a href={href("/trade")} aria-current={current("trade")} data-testid="nav-trade">
              Trade
            </a>
            <a href={href("/history")} aria-current={current("history")} data-testid="nav-history">
              History
            </a>
          </nav>
          <div className="topbar__right">
            <ConnStatus />
            <span className="topbar__user" data-testid="user-email" title={user.email}>
              {user.email}
            </span>
            <button type="button" className="btn btn--ghost btn--sm" onClick={logout} disabled={busy} data-testid="logout">
              Log out
            </button>
          </div>
        </>
      ) : (
        <div className="topbar__right">
          <a className="btn btn--ghost btn--sm" href={href("/signin")} data-testid="nav-signin">
            Sign in
          </a>
          <a className="btn btn--primary btn--sm" href={href("/signup")} data-testid="nav-signup">
            Sign up
          </a>
        </div>
      )}
    </header>
  );
}
