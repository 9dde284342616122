/**
 * The database connection silently dropped: a worker reaches PostgreSQL through a TCP proxy on loopback
 * that stops forwarding without closing anything (a partition, a dead NAT entry). The worker must notice
 * within its lease, stop the run it can no longer vouch for before another worker takes the request over,
 * and work again once the path is back.
 */
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runCli, waitFor } from "../support/cli.js"
import { tempDir, writePipeline } from "../support/harness.js"
import {
  audit,
  connect,
  insertRequests,
  orphanProcesses,
  report,
  startWorker,
  useOwnDatabase,
  viaPort,
  waitUntilSettled,
  workerEnv
} from "./support/Fleet.js"
import { startTcpProxy, type TcpProxy } from "./support/TcpProxy.js"

describe("the database connection silently dropped", () => {
  const database = useOwnDatabase()
  let proxy: TcpProxy
  beforeAll(async () => {
    const target = new URL(database.url)
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) })
  })
  afterAll(async () => {
    await proxy?.close()
  })

  it("the worker gives the request up within its lease, another finishes it once, and the worker recovers", async () => {
    const leaseEnv = {
      STAGELINE_LEASE_MS: "3000",
      STAGELINE_MAX_ATTEMPTS: "3",
      STAGELINE_RETRY_BACKOFF_MS: "0",
      STAGELINE_DB_CONNECT_TIMEOUT_MS: "1000",
      STAGELINE_DB_QUERY_TIMEOUT_MS: "1000",
      POLL_INTERVAL_MS: "300"
    }
    const direct = workerEnv(database.url, leaseEnv)
    expect((await runCli(["migrate"], direct)).code).toBe(0)
    const db = connect(database.url)
    const pipeline = writePipeline()
    const runsFile = path.join(tempDir("runs"), "runs.log")
    const proxied = startWorker(pipeline.file, "drop-a", {
      ...direct,
      DATABASE_URL: viaPort(database.url, proxy.port)
    })
    await waitFor("the proxied worker to start", async () => proxied.output().includes("running pipeline"), 90_000)
    const [id] = await insertRequests(db, [{ prompt: "placeholder" }])
    await db.query("UPDATE orchestration_requests SET prompt = $2 WHERE id = $1", [
      id,
      `@sleep 30000\n@append ${runsFile} ${id}\n@say done`
    ])
    const state = async () =>
      (
        await db.query<{ status: string; attempts: number; claimed_by: string | null }>(
          "SELECT status, attempts, claimed_by FROM orchestration_requests WHERE id = $1",
          [id]
        )
      ).rows[0]!
    await waitFor("the proxied worker to run the agent", async () => {
      const s = await state()
      return s.status === "processing" && s.claimed_by === "drop-a/1" && orphanProcesses([proxied]).length > 0
    })

    proxy.mode = "blackhole"
    // The cut-off worker's agent has its prompt already; the next attempt need not sleep as long.
    await db.query("UPDATE orchestration_requests SET prompt = $2 WHERE id = $1", [
      id,
      `@append ${runsFile} ${id}\n@say done`
    ])
    const rescuer = startWorker(pipeline.file, "drop-b", direct)
    // By the time the rescuer claims the request again, the cut-off worker has stopped its own agent.
    await waitFor("the rescuer to claim the second attempt", async () => (await state()).attempts === 2, 30_000)
    const agentsOfCutOff = orphanProcesses([proxied])
    await waitFor("the request to complete", async () => (await state()).status === "completed", 30_000)

    proxy.mode = "forward"
    expect((await rescuer.stop()).code).toBe(0)
    const [later] = await insertRequests(db, [{ prompt: "@say the path is back" }])
    await waitUntilSettled(db, 30_000)
    const laterResult = (
      await db.query("SELECT status, worker_id FROM orchestration_results WHERE request_id = $1", [later])
    ).rows
    const rows = (
      await db.query<{ attempt: number; status: string; worker_id: string; error: string | null }>(
        "SELECT attempt, status, worker_id, error FROM orchestration_results WHERE request_id = $1 ORDER BY attempt",
        [id]
      )
    ).rows
    const result = await audit(db, { workers: [proxied, rescuer], workspaceBase: direct.WORKSPACE_BASE, runsFile })
    report("connection-drop", {
      requests: result.requests,
      faults: 1,
      lost: result.lost,
      duplicated: result.duplicated,
      orphans: result.orphans,
      byStatus: result.byStatus
    })
    expect(agentsOfCutOff).toEqual([])
    expect(proxied.output()).toContain("stopping its run before the lease runs out")
    expect(rows.map((r) => [r.attempt, r.status, r.worker_id])).toEqual([
      [1, "error", "drop-a/1"],
      [2, "success", "drop-b/1"]
    ])
    expect(laterResult).toEqual([{ status: "success", worker_id: "drop-a/1" }])
    expect(result.problems).toEqual([])
    expect((await proxied.stop()).code).toBe(0)
    await db.end()
  }, 120_000)
})
