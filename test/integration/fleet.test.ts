/**
 * Worker processes (real OS processes) sharing one database: crash recovery through leases, cancellation
 * of a running request, a lost listener, and many workers over many requests.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { DatabaseUrl } from "../../src/db/Database.js"
import { runCli, startCli, waitFor } from "../support/cli.js"
import { tempDir, writePipeline } from "../support/harness.js"
import { isRunning } from "../support/processes.js"
import { TestDatabase } from "../support/TestDatabase.js"

layer(TestDatabase, { excludeTestServices: true, timeout: "180 seconds" })("a fleet of worker processes", (it) => {
  const setup = Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`DELETE FROM orchestration_results`
    yield* sql`DELETE FROM orchestration_requests`
    const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(effect)
    return {
      sql,
      env: { DATABASE_URL: Redacted.value(yield* DatabaseUrl), WORKSPACE_BASE: tempDir("ws"), LOG_LEVEL: "info" },
      insert: (prompt: string, metadata: Record<string, string> | null = null) =>
        run(
          sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, metadata)
            VALUES (${prompt}, ${metadata && JSON.stringify(metadata)}::jsonb) RETURNING id`.pipe(
            Effect.map((r) => r[0]!.id)
          )
        ),
      request: (id: string) =>
        run(
          sql<{
            status: string
            attempts: number
          }>`SELECT status, attempts FROM orchestration_requests WHERE id = ${id}`.pipe(Effect.map((r) => r[0]!))
        ),
      results: (id: string) =>
        run(
          sql<{
            attempt: number
            status: string
            error: string | null
            worker_id: string
          }>`SELECT attempt, status, error, worker_id
            FROM orchestration_results WHERE request_id = ${id} ORDER BY attempt`
        )
    }
  })

  it.effect("finishes a SIGKILLed worker's request in another worker once its lease runs out", () =>
    Effect.gen(function* () {
      const { env, insert, request, results } = yield* setup
      const pipeline = writePipeline()
      const pidFile = path.join(tempDir("pids"), "pids.json")
      const fleetEnv = { ...env, STAGELINE_LEASE_MS: "1500", STAGELINE_RETRY_BACKOFF_MS: "0" }
      yield* Effect.promise(async () => {
        const doomed = startCli(["run", "--pipeline", pipeline.file], { ...fleetEnv, STAGELINE_WORKER_ID: "doomed" })
        const id = await insert("@sleep 2500\n@say finished", { pidFile })
        await waitFor("the first worker to claim it", async () => (await request(id)).status === "processing")
        doomed.child.kill("SIGKILL")
        await doomed.exited
        const rescuer = startCli(["run", "--pipeline", pipeline.file], { ...fleetEnv, STAGELINE_WORKER_ID: "rescuer" })
        await waitFor("the request to complete", async () => (await request(id)).status === "completed", 60_000)
        rescuer.child.kill("SIGTERM")
        expect((await rescuer.exited).code).toBe(0)
        expect(await request(id)).toEqual({ status: "completed", attempts: 2 })
        const rows = await results(id)
        expect(rows.map((r) => [r.attempt, r.status, r.worker_id])).toEqual([
          [1, "error", "doomed/1"],
          [2, "success", "rescuer/1"]
        ])
        expect(rows[0]!.error).toContain("stopped renewing its lease")
      })
    })
  )

  it.effect("ends what a SIGKILLed worker's agent left running, and fails a request with no attempts left", () =>
    Effect.gen(function* () {
      const { sql, env, request, results } = yield* setup
      const pidFile = path.join(tempDir("pids"), "pids.json")
      const fleetEnv = { ...env, STAGELINE_LEASE_MS: "1500", STAGELINE_RETRY_BACKOFF_MS: "0" }
      const pipeline = writePipeline()
      yield* Effect.promise(async () => {
        const [row] = await Effect.runPromise(
          sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, metadata, max_attempts)
            VALUES ('@hang', ${JSON.stringify({ pidFile })}::jsonb, 1) RETURNING id`
        )
        const id = row!.id
        const doomed = startCli(["run", "--pipeline", pipeline.file], { ...fleetEnv, STAGELINE_WORKER_ID: "doomed" })
        await waitFor("the agent to start", async () => fs.existsSync(pidFile) && fs.statSync(pidFile).size > 0)
        const pids = JSON.parse(fs.readFileSync(pidFile, "utf8")) as Array<number>
        doomed.child.kill("SIGKILL")
        await doomed.exited
        const next = startCli(["run", "--pipeline", pipeline.file], { ...fleetEnv, STAGELINE_WORKER_ID: "next" })
        // The agent went with its worker; what it started is ended by the next worker on the machine.
        await waitFor(
          "every process of the dead run to be gone",
          async () => pids.filter(isRunning).length === 0,
          15_000
        )
        await waitFor("the request to fail", async () => (await request(id)).status === "failed", 15_000)
        expect((await results(id)).map((r) => [r.attempt, r.status])).toEqual([[1, "error"]])
        next.child.kill("SIGTERM")
        expect((await next.exited).code).toBe(0)
        // (Any worker on the machine may be the one that ends them: each reaps every dead worker's leftovers.)
      })
    })
  )

  it.effect("stops a running request that is cancelled: its agent's processes gone, the result cancelled", () =>
    Effect.gen(function* () {
      const { sql, env, insert, request, results } = yield* setup
      const pidFile = path.join(tempDir("pids"), "pids.json")
      const worker = startCli(["run", "--pipeline", writePipeline().file], env)
      yield* Effect.promise(async () => {
        const id = await insert("@ignore-sigterm\n@hang", { pidFile })
        await waitFor("the agent to start", async () => fs.existsSync(pidFile) && fs.statSync(pidFile).size > 0)
        const pids = JSON.parse(fs.readFileSync(pidFile, "utf8")) as Array<number>
        await Effect.runPromise(sql`UPDATE orchestration_requests SET status = 'cancelled' WHERE id = ${id}`)
        // The agent ignores SIGTERM: only the escalation to SIGKILL, after the 3 s grace, ends it.
        await waitFor("the result to say cancelled", async () => (await results(id))[0]?.status === "cancelled", 5_000)
        expect(pids.filter(isRunning)).toEqual([])
        expect(await request(id)).toMatchObject({ status: "cancelled" })
        worker.child.kill("SIGTERM")
        expect((await worker.exited).code).toBe(0)
      })
    })
  )

  it.effect("keeps picking requests up at once after its listening connection is killed", () =>
    Effect.gen(function* () {
      const { sql, env, insert, request } = yield* setup
      const worker = startCli(["run", "--pipeline", writePipeline().file], { ...env, POLL_INTERVAL_MS: "600000" })
      yield* Effect.promise(async () => {
        await waitFor("the worker to start", async () => worker.output().includes("running pipeline"))
        await waitFor("the listener to connect", async () => {
          const rows = await Effect.runPromise(
            sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE application_name = 'stageline-listen'
              AND datname = current_database()`
          )
          return rows.length > 0
        })
        await Effect.runPromise(
          sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'stageline-listen'
            AND datname = current_database()`
        )
        await waitFor("the listener to notice", async () =>
          worker.output().includes("queue listener lost its connection")
        )
        await waitFor("the listener to reconnect", async () => {
          const rows = await Effect.runPromise(
            sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE application_name = 'stageline-listen'
              AND datname = current_database()`
          )
          return rows.length > 0
        })
        // The next poll is ten minutes away: only the reconnected listener can wake the worker.
        const id = await insert("@say after the reconnect")
        await waitFor("the request to complete", async () => (await request(id)).status === "completed", 15_000)
        worker.child.kill("SIGTERM")
        expect((await worker.exited).code).toBe(0)
      })
    })
  )

  it.effect("has 4 processes of 4 fibers process 2,000 requests, each exactly once", () =>
    Effect.gen(function* () {
      const { sql, env } = yield* setup
      yield* sql`INSERT INTO orchestration_requests (prompt) SELECT 'request ' || g FROM generate_series(1, 2000) g`
      const pipeline = writePipeline({ stages: "\n  - claim\n  - record\n" })
      const runs = yield* Effect.promise(() =>
        Promise.all(
          [1, 2, 3, 4].map((n) =>
            runCli(["run", "--once", "--pipeline", pipeline.file], {
              ...env,
              WORKER_COUNT: "4",
              STAGELINE_WORKER_ID: `fleet-${n}`,
              LOG_LEVEL: "warning"
            })
          )
        )
      )
      expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0])
      const [counts] = yield* sql<{
        results: number
        requests: number
        completed: number
        once: number
        workers: number
      }>`
        SELECT (SELECT count(*)::int FROM orchestration_results) AS results,
               (SELECT count(DISTINCT request_id)::int FROM orchestration_results) AS requests,
               (SELECT count(*)::int FROM orchestration_requests WHERE status = 'completed' AND attempts = 1) AS completed,
               (SELECT count(*)::int FROM (SELECT request_id FROM orchestration_results GROUP BY request_id
                  HAVING count(*) = 1) s) AS once,
               (SELECT count(DISTINCT split_part(worker_id, '/', 1))::int FROM orchestration_results) AS workers`
      expect(counts).toEqual({ results: 2000, requests: 2000, completed: 2000, once: 2000, workers: 4 })
    })
  )
})
