import { useToasts } from "../live/toasts";

/** Toast stack (fills, closes, liquidations, errors). Announced to screen readers. */
export function Toasts() {
  const toasts = useToasts((s) => s.toasts);
  const dismiss = useToasts((s) => s.dismiss);
  return (
    <div className="toasts" aria-live="polite" aria-relevant="additions text">
      {toasts.map((t) => (
        <div
          key={t.id}
          className={`toast toast--${t.tone}`}
          data-testid="toast"
          data-tone={t.tone}
          role={t.tone === "danger" || t.tone === "error" ? "alert" : "status"}
        >
          <div className="toast__text">
            <strong className="toast__title">{t.title}</strong>
            {t.body && <span className="toast__body">{t.body}</span>}
          </div>
          <button type="button" className="toast__close" onClick={() => dismiss(t.id)} aria-label="Dismiss notification">
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
