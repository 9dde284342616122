/**
 * Something that happens at most once to an object (a run is aborted, a worker starts its shutdown), heard
 * through plain callbacks: a wait that must also end on a timer or another event needs no fiber of its own
 * just to wait for this one. The first value stands; a listener added after it gets it at once.
 */
export interface OnceEvent<K extends object, A> {
  /** Makes it happen with `value`, unless it already did; calls the listeners. False if it already had. */
  readonly fire: (key: K, value: A) => boolean
  /** Calls `listener` when it happens, at once if it has; returns how to stop listening. */
  readonly listen: (key: K, listener: (value: A) => void) => () => void
}

export const make = <K extends object, A>(): OnceEvent<K, A> => {
  const fired = new WeakMap<K, { readonly value: A }>()
  const listeners = new WeakMap<K, Set<(value: A) => void>>()
  return {
    fire: (key, value) => {
      if (fired.has(key)) return false
      fired.set(key, { value })
      const waiting = listeners.get(key)
      listeners.delete(key)
      for (const listener of waiting ?? []) listener(value)
      return true
    },
    listen: (key, listener) => {
      const already = fired.get(key)
      if (already) {
        listener(already.value)
        return () => {}
      }
      let set = listeners.get(key)
      if (!set) {
        set = new Set()
        listeners.set(key, set)
      }
      set.add(listener)
      return () => {
        set.delete(listener)
      }
    }
  }
}
