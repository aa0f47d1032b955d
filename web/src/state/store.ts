// A minimal observable store and a Preact hook to read it.
import { useEffect, useState } from 'preact/hooks';

export interface Store<S> {
  get(): S;
  set(next: S | ((s: S) => S)): void;
  subscribe(fn: (s: S) => void): () => void;
}

export function createStore<S>(initial: S): Store<S> {
  let state = initial;
  const subs = new Set<(s: S) => void>();
  return {
    get: () => state,
    set(next) {
      const value = typeof next === 'function' ? (next as (s: S) => S)(state) : next;
      if (value === state) return;
      state = value;
      subs.forEach((fn) => fn(state));
    },
    subscribe(fn) {
      subs.add(fn);
      return () => subs.delete(fn);
    },
  };
}

export function useStore<S>(store: Store<S>): S {
  const [, force] = useState(0);
  useEffect(() => store.subscribe(() => force((n) => n + 1)), [store]);
  return store.get();
}
