/**
 * PostgreSQL restarted under a running fleet: two worker processes, the server stopped (every session
 * ended, connections refused) while requests are in flight, then started again. Every request must end
 * exactly once, each agent run to its end once, and the workers carry on.
 */
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runCli, waitFor } from "../support/cli.js"
import { tempDir, writePipeline } from "../support/harness.js"
import {
  audit,
  connect,
  insertRequests,
  report,
  startWorker,
  type WorkerProcess,
  waitUntilSettled,
  workerEnv
} from "./support/Fleet.js"
import { type OwnPostgres, startOwnPostgres } from "./support/OwnPostgres.js"

describe("PostgreSQL restarted mid-run", () => {
  let server: OwnPostgres
  beforeAll(async () => {
    server = await startOwnPostgres()
  }, 120_000)
  afterAll(async () => {
    await server?.dispose()
  })

  it("loses no request and runs none twice; the workers reconnect and carry on", async () => {
    const env = workerEnv(server.url, {
      WORKER_COUNT: "2",
      STAGELINE_LEASE_MS: "6000",
      STAGELINE_MAX_ATTEMPTS: "3",
      STAGELINE_RETRY_BACKOFF_MS: "0",
      STAGELINE_DB_CONNECT_TIMEOUT_MS: "2000",
      STAGELINE_DB_QUERY_TIMEOUT_MS: "3000"
    })
    expect((await runCli(["migrate"], env)).code).toBe(0)
    const db = connect(server.url)
    const runsFile = path.join(tempDir("runs"), "runs.log")
    const total = 40
    const ids = await insertRequests(
      db,
      Array.from({ length: total }, () => ({ prompt: "placeholder" }))
    )
    for (const id of ids) {
      await db.query("UPDATE orchestration_requests SET prompt = $2 WHERE id = $1", [
        id,
        `@sleep 250\n@append ${runsFile} ${id}\n@say done`
      ])
    }
    const pipeline = writePipeline()
    const workers: Array<WorkerProcess> = [
      startWorker(pipeline.file, "restart-a", env),
      startWorker(pipeline.file, "restart-b", env)
    ]
    const finished = async () =>
      (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM orchestration_results")).rows[0]!.n
    await waitFor("some requests to finish", async () => (await finished()) >= 8, 60_000)
    const inFlight = (
      await db.query<{ n: number }>("SELECT count(*)::int AS n FROM orchestration_requests WHERE status = 'processing'")
    ).rows[0]!.n
    const before = await finished()

    await server.stop()
    await new Promise((r) => setTimeout(r, 2_000))
    await server.start()

    await waitUntilSettled(db, 90_000)
    const result = await audit(db, { workers, workspaceBase: env.WORKSPACE_BASE, runsFile })
    const alive = workers.map((w) => w.child.exitCode === null && w.child.signalCode === null)
    report("postgres-restart", {
      requests: result.requests,
      faults: 1,
      inFlightAtRestart: inFlight,
      finishedBeforeRestart: before,
      lost: result.lost,
      duplicated: result.duplicated,
      orphans: result.orphans,
      byStatus: result.byStatus,
      failedAttempts: result.failedAttempts
    })
    expect(result.problems).toEqual([])
    expect(before).toBeLessThan(total)
    expect(result.byStatus).toEqual({ completed: total })
    expect(alive).toEqual([true, true])
    // The outage was felt, not slept through.
    expect(workers.map((w) => w.output()).join("\n")).toMatch(/could not|lost its connection|claiming failed/)

    // Both still take work.
    const [after] = await insertRequests(db, [{ prompt: "@say after the restart" }])
    await waitUntilSettled(db, 30_000)
    expect((await db.query("SELECT status FROM orchestration_requests WHERE id = $1", [after])).rows[0]).toEqual({
      status: "completed"
    })
    const exits = await Promise.all(workers.map((w) => w.stop()))
    expect(exits.map((e) => e.code)).toEqual([0, 0])
    await db.end()
  }, 240_000)
})
