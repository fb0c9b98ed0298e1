// Toast notifications. A toast has a key: a later toast with the same key
// replaces the earlier one (the REST reply to a close says "closed", then the
// `account` push with the fill's price and PnL refines the same toast).

import { create } from "zustand";

export type ToastTone = "info" | "success" | "long" | "short" | "error" | "danger";

export interface Toast {
  id: number;
  key: string;
  tone: ToastTone;
  title: string;
  body?: string;
  ttlMs: number;
}

interface ToastState {
  toasts: Toast[];
  push: (t: Omit<Toast, "id" | "ttlMs" | "key"> & { key?: string; ttlMs?: number }) => void;
  dismiss: (id: number) => void;
  clear: () => void;
}

let seq = 0;
const timers = new Map<number, ReturnType<typeof setTimeout>>();
const MAX_TOASTS = 5;

export const useToasts = create<ToastState>((set, get) => ({
  toasts: [],
  push: (t) => {
    const id = ++seq;
    const toast: Toast = { ...t, id, key: t.key ?? `t${id}`, ttlMs: t.ttlMs ?? 6000 };
    const existing = get().toasts.find((x) => x.key === toast.key);
    if (existing) {
      clearTimeout(timers.get(existing.id));
      timers.delete(existing.id);
    }
    set((s) => {
      const rest = s.toasts.filter((x) => x.key !== toast.key);
      return { toasts: [...rest, toast].slice(-MAX_TOASTS) };
    });
    timers.set(
      id,
      setTimeout(() => get().dismiss(id), toast.ttlMs),
    );
  },
  dismiss: (id) => {
    clearTimeout(timers.get(id));
    timers.delete(id);
    set((s) => ({ toasts: s.toasts.filter((x) => x.id !== id) }));
  },
  clear: () => {
    for (const t of timers.values()) clearTimeout(t);
    timers.clear();
    set({ toasts: [] });
  },
}));

export const toast = (t: Parameters<ToastState["push"]>[0]) => useToasts.getState().push(t);
