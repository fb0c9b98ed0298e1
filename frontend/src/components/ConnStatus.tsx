import { useNow } from "../hooks";
import { useLive } from "../live/store";

const LABEL = {
  idle: "Offline",
  connecting: "Connecting…",
  connected: "Live",
  reconnecting: "Reconnecting…",
} as const;

/** Live-connection indicator: connected / connecting / reconnecting (with the next retry). */
export function ConnStatus() {
  const status = useLive((s) => s.status);
  const retryAt = useLive((s) => s.retryAt);
  const now = useNow(1000);
  const secs = retryAt ? Math.max(0, Math.ceil((retryAt - now) / 1000)) : null;
  const detail = status === "reconnecting" && secs !== null && secs > 0 ? ` retry in ${secs}s` : "";
  return (
    <div
      className={`conn conn--${status}`}
      data-testid="conn-status"
      data-state={status}
      role="status"
      aria-live="polite"
      title={status === "connected" ? "Live prices and account updates" : "Live updates paused; they resume by themselves"}
    >
      <span className="conn__dot" aria-hidden="true" />
      <span className="conn__label">
        {LABEL[status]}
        {detail && <span className="conn__retry">{detail}</span>}
      </span>
    </div>
  );
}
