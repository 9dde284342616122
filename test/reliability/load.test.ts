/**
 * Load, small: a few hundred no-op requests across two worker processes, each completed exactly once,
 * nothing left, the workers' memory reported. `npm run soak` runs the same scenario with 10,000. Sixteen
 * fibers a process, so that each process records in two groups, their statements in flight at once
 * (Queue's recordGroupsFor), as two processes' statements always could be.
 */
import { describe, it } from "vitest"
import { useOwnDatabase } from "./support/Fleet.js"
import { runLoad } from "./support/Load.js"

describe("load", () => {
  const database = useOwnDatabase()

  it("240 no-op requests over 2 processes of 16 fibers: each completed exactly once, memory flat", async () => {
    await runLoad({
      databaseUrl: database.url,
      requests: 240,
      processes: 2,
      fibers: 16,
      settleMs: 150_000,
      maxGrowthMiB: 150
    })
  }, 240_000)
})
