// fetch wrapper for /api/v1: JSON in and out, the `jwt` cookie sent with every
// request, and every failure turned into an ApiError carrying the API's
// human-readable `message` (and per-field messages when the body has them).

import { API_BASE } from "../config/features";

export type FieldErrors = Partial<Record<string, string>>;

export class ApiError extends Error {
  readonly status: number;
  readonly body: unknown;
  readonly fields: FieldErrors;

  constructor(status: number, message: string, body: unknown = null, fields: FieldErrors = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
    this.fields = fields;
  }
}

let onUnauthorized: (() => void) | null = null;

/** Called when any request answers 401 (the session ended or never began). */
export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

interface DetailItem {
  loc?: unknown[];
  msg?: string;
  message?: string;
  field?: string;
}

/**
 * The API answers `{"message": "..."}`; validation errors may also carry a list
 * (`errors` or FastAPI's `detail`) naming the field. Returns the message to show
 * and the messages per field.
 */
export function readErrorBody(status: number, body: unknown): { message: string; fields: FieldErrors } {
  const fields: FieldErrors = {};
  let message = "";
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    if (typeof b.message === "string") message = b.message;
    const list = Array.isArray(b.errors) ? b.errors : Array.isArray(b.detail) ? b.detail : null;
    if (list) {
      for (const item of list as DetailItem[]) {
        const text = item.msg ?? item.message;
        const loc = item.field ?? (Array.isArray(item.loc) ? item.loc[item.loc.length - 1] : undefined);
        if (typeof text === "string" && typeof loc === "string" && !fields[loc]) fields[loc] = text;
        if (!message && typeof text === "string") message = text;
      }
    } else if (!message && typeof b.detail === "string") {
      message = b.detail;
    }
  }
  if (!message) message = defaultMessage(status);
  return { message, fields };
}

function defaultMessage(status: number): string {
  switch (status) {
    case 401:
      return "Please sign in.";
    case 403:
      return "Not allowed.";
    case 404:
      return "Not found.";
    case 429:
      return "Too many requests — wait a moment and try again.";
    case 503:
      return "The service is busy or unavailable — try again shortly.";
    default:
      return `Request failed (HTTP ${status}).`;
  }
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "DELETE";
  body?: unknown;
  query?: Record<string, string | number | undefined | null>;
  signal?: AbortSignal;
  /** don't run the global 401 handler (whoami, signin) */
  quiet401?: boolean;
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  let url = API_BASE + path;
  if (opts.query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== null) qs.set(k, String(v));
    const s = qs.toString();
    if (s) url += "?" + s;
  }
  const init: RequestInit = {
    method: opts.method ?? "GET",
    credentials: "include",
    headers: { Accept: "application/json" },
    signal: opts.signal,
  };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new ApiError(0, "Cannot reach the server — check your connection.");
  }
  const text = await res.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && !opts.quiet401 && onUnauthorized) onUnauthorized();
    const { message, fields } = readErrorBody(res.status, body);
    throw new ApiError(res.status, message, body, fields);
  }
  return body as T;
}
