import { createStore } from './store';

export type ToastKind = 'info' | 'success' | 'error';
export interface Toast {
  id: number;
  text: string;
  kind: ToastKind;
}

export const toasts = createStore<Toast[]>([]);
let seq = 0;

export function toast(text: string, kind: ToastKind = 'info', ms = 5000): number {
  const id = ++seq;
  toasts.set((l) => [...l.slice(-4), { id, text, kind }]);
  if (typeof setTimeout !== 'undefined') setTimeout(() => dismissToast(id), ms);
  return id;
}

export function dismissToast(id: number) {
  toasts.set((l) => (l.some((t) => t.id === id) ? l.filter((t) => t.id !== id) : l));
}
