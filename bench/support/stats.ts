/** Small statistics for the benchmarks: no library, so what is computed is plain to see. */

export const sorted = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)

/** Nearest-rank percentile (p in 0..100) of a non-empty sample. */
export const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = sorted(xs)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

export const median = (xs: ReadonlyArray<number>) => percentile(xs, 50)

export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits

/** Milliseconds since the epoch, sub-millisecond precise, comparable across the benchmark's own process. */
export const now = () => performance.timeOrigin + performance.now()

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` every `everyMs` until it is true; fails after `timeoutMs`. */
export const until = async (what: string, check: () => Promise<boolean>, everyMs = 10, timeoutMs = 600_000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}

/** The order systems run in during round `r`: rotated, so that no system always goes first. */
export const rotate = <A>(xs: ReadonlyArray<A>, r: number) => xs.map((_, i) => xs[(i + r) % xs.length]!)
