/** A small seeded PRNG (mulberry32): the same seed gives the same rows, so a failure reproduces. */
export const prng = (seed: number) => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)),
    pick: <A>(items: ReadonlyArray<A>): A => items[Math.floor(next() * items.length)]!,
    chance: (p: number) => next() < p
  }
}

/** The seed: FUZZ_SEED when set (to reproduce a failure), else a fresh one. */
export const seedFromEnv = () => {
  const given = process.env.FUZZ_SEED
  return given !== undefined && given !== "" ? Number(given) : Math.floor(Math.random() * 2 ** 31)
}
