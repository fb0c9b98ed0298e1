// Build-time feature flags (Vite env, VITE_ prefix). Limit orders are on now
// that the API serves them (POST/GET/DELETE /api/v1/orders);
// VITE_FEATURE_LIMIT_ORDERS=false hides the Limit tab again.
export const features = {
  limitOrders: import.meta.env.VITE_FEATURE_LIMIT_ORDERS !== "false",
} as const;

/**
 * Where the REST API lives. Empty (default): the same origin that served the
 * app, as in the local stack (http://127.0.0.1:8000 serves dist/ and /api/v1)
 * and behind CloudFront. Set VITE_API_ORIGIN at build time for another origin.
 */
export const API_ORIGIN: string = (import.meta.env.VITE_API_ORIGIN ?? "").replace(/\/$/, "");
export const API_BASE = `${API_ORIGIN}/api/v1`;
