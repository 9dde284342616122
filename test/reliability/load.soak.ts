/**
 * Load, in full: 10,000 no-op requests (LOAD_REQUESTS to change it) across four worker processes of 16
 * fibers (each recording in two groups): each completed exactly once, no deadlock, every worker's memory
 * flat from a quarter of the way on.
 */
import { describe, it } from "vitest"
import { useOwnDatabase } from "./support/Fleet.js"
import { runLoad } from "./support/Load.js"

const requests = Number(process.env.LOAD_REQUESTS ?? 10_000)

describe("load (soak)", () => {
  const database = useOwnDatabase()

  it(`${requests} no-op requests over 4 processes of 16 fibers: each completed exactly once, memory flat`, async () => {
    await runLoad({
      databaseUrl: database.url,
      requests,
      processes: 4,
      fibers: 16,
      settleMs: 3_000_000,
      maxGrowthMiB: 100
    })
  })
})
