/**
 * Fuzzing, long: thousands of random rows (FUZZ_ROWS), a worker SIGKILLed and replaced every few seconds,
 * requests cancelled at random; the same invariant as the small version. FUZZ_SEED replays a run.
 */
import { describe, it } from "vitest"
import { useOwnDatabase } from "./support/Fleet.js"
import { runFuzz } from "./support/Fuzz.js"
import { seedFromEnv } from "./support/Prng.js"

const rows = Number(process.env.FUZZ_ROWS ?? 2_000)

describe("fuzzing (soak)", () => {
  const database = useOwnDatabase()

  it(`${rows} random request rows with workers killed on the way: each ends once per attempt`, async () => {
    await runFuzz({
      databaseUrl: database.url,
      seed: seedFromEnv(),
      rows,
      processes: 3,
      fibers: 3,
      killEveryMs: 8_000,
      settleMs: 3_000_000
    })
  })
})
