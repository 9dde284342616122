/**
 * Fuzzing, small: random valid and invalid rows from a seeded PRNG (FUZZ_SEED replays one), some cancelled
 * on the way; every claimed request ends with one result per attempt and a final status, and the workers
 * are alive. `npm run soak` runs thousands of rows and kills workers as it goes.
 */
import { describe, it } from "vitest"
import { useOwnDatabase } from "./support/Fleet.js"
import { runFuzz } from "./support/Fuzz.js"
import { seedFromEnv } from "./support/Prng.js"

describe("fuzzing", () => {
  const database = useOwnDatabase()

  it("random request rows: every claimed one ends once per attempt, the workers alive", async () => {
    await runFuzz({
      databaseUrl: database.url,
      seed: seedFromEnv(),
      rows: 100,
      processes: 2,
      fibers: 3,
      killEveryMs: null,
      settleMs: 150_000
    })
  }, 240_000)
})
