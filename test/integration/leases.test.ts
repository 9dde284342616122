/**
 * One heartbeat per worker process renews the leases of every request it runs (src/queue/Lease.ts), and
 * what it finds stops the runs it must: a request cancelled while no notification came, and a request that
 * is no longer this worker's.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Fiber, Redacted } from "effect"
import pg from "pg"
import { DatabaseUrl } from "../../src/db/Database.js"
import { runOnce, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

const stages = `
  - claim
  - prepare-workspace
  - execute-mclaude
  - record
`

/** How the agent stage of a request's first attempt ended, as its stage-finished event says; none yet: undefined. */
const agentStageEnd = (requestId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ message: string | null }>`SELECT message FROM orchestration_events
        WHERE request_id = ${requestId} AND attempt = 1 AND kind = 'stage-finished' AND stage = 'execute-mclaude'`,
      (rows) => rows[0]?.message
    )
  )

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("lease heartbeats", (it) => {
  it.effect("renew every running request in one statement, and stop the cancelled and the lost ones", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // The heartbeat alone must find the cancel: no notification tells the worker.
      yield* sql`ALTER TABLE orchestration_requests DISABLE TRIGGER orchestration_requests_cancel_notify`
      const [kept, cancelled, lost] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, priority)
        VALUES ('@sleep 4000', 3), ('@sleep 30000', 2), ('@sleep 30000', 1) RETURNING id`
      const { file } = writePipeline({ stages })
      const worker = yield* Effect.fork(runOnce(file, { workerCount: 3, leaseMs: 900 }))

      // Each renewal is one statement for all three: one transaction, so one now(), later than the claims.
      const renewed = () =>
        sql<{ beats: number; at: number }>`SELECT count(DISTINCT heartbeat_at)::int AS beats,
            count(*)::int AS at FROM orchestration_requests
          WHERE status = 'processing' AND heartbeat_at > claimed_at`
      let seen = { beats: 0, at: 0 }
      while (seen.at < 3) {
        yield* Effect.sleep(50)
        seen = (yield* renewed())[0]!
      }
      expect(seen.beats).toBe(1)

      yield* sql`UPDATE orchestration_requests SET status = 'cancelled' WHERE id = ${cancelled!.id}`
      yield* sql`UPDATE orchestration_requests SET claimed_by = 'another-worker/1' WHERE id = ${lost!.id}`
      yield* Fiber.join(worker)

      const results = yield* sql<{
        request_id: string
        status: string
        error: string | null
        worker_id: string
      }>`SELECT request_id, status, error, worker_id FROM orchestration_results`
      const byId = new Map(results.filter((r) => r.worker_id !== "another-worker/1").map((r) => [r.request_id, r]))
      expect(byId.get(kept!.id)?.status).toBe("success")
      expect(byId.get(cancelled!.id)).toMatchObject({
        status: "cancelled",
        error: expect.stringContaining("cancelled")
      })
      // Not this worker's any more: its run stopped, and its outcome is not this worker's to write (the
      // lease it no longer renews may run out meanwhile: that result row is the other worker's).
      expect(byId.has(lost!.id)).toBe(false)
      expect(yield* agentStageEnd(lost!.id)).toContain("no longer held by")
    })
  )

  it.effect(
    "skip a row another transaction holds locked, renewing the rest, and stop its run before its lease runs out",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
        const [locked, other] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, priority)
        VALUES ('@sleep 30000', 2), ('@sleep 3000', 1) RETURNING id`
        const { file } = writePipeline({ stages })
        const worker = yield* Effect.fork(runOnce(file, { workerCount: 2, leaseMs: 900 }))
        const heartbeatOf = (id: string) =>
          Effect.map(
            sql<{ at: Date | null }>`SELECT heartbeat_at AS at FROM orchestration_requests
            WHERE id = ${id} AND status = 'processing'`,
            (rows) => rows[0]?.at?.getTime() ?? null
          )
        while ((yield* heartbeatOf(locked!.id)) === null || (yield* heartbeatOf(other!.id)) === null) {
          yield* Effect.sleep(50)
        }
        // An operator's transaction holds the row (as an UPDATE would), and does not let go.
        const holder = new pg.Client({ connectionString: Redacted.value(yield* DatabaseUrl) })
        yield* Effect.promise(() => holder.connect())
        yield* Effect.promise(() => holder.query("BEGIN"))
        yield* Effect.promise(() =>
          holder.query("SELECT 1 FROM orchestration_requests WHERE id = $1 FOR NO KEY UPDATE", [locked!.id])
        )
        const otherBefore = (yield* heartbeatOf(other!.id))!
        let message: string | null | undefined
        while (message === undefined) {
          yield* Effect.sleep(50)
          message = yield* agentStageEnd(locked!.id)
        }
        expect(message).toContain("another transaction held the request's row locked")
        // The other request's lease went on being renewed meanwhile.
        expect(yield* heartbeatOf(other!.id)).toBeGreaterThan(otherBefore)
        yield* Effect.promise(() => holder.query("ROLLBACK"))
        yield* Effect.promise(() => holder.end())
        yield* Fiber.join(worker)
        const results = yield* sql<{ request_id: string; status: string }>`SELECT request_id, status
        FROM orchestration_results`
        expect(new Map(results.map((r) => [r.request_id, r.status]))).toEqual(
          new Map([
            [locked!.id, "error"],
            [other!.id, "success"]
          ])
        )
      })
  )

  it.effect("stop a run whose request another fiber of the same worker claimed again", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
      // The second fiber runs a short request meanwhile, and looks for work again when it is done (with
      // --once, a fiber that finds the queue empty stops).
      const [request, short] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, priority)
        VALUES ('@sleep 5000', 2), ('@sleep 1500', 1) RETURNING id`
      const { file } = writePipeline({ stages })
      const worker = yield* Effect.fork(runOnce(file, { workerCount: 2, leaseMs: 30_000 }))
      const processing = () =>
        sql<{ id: string; claimed_by: string }>`SELECT id, claimed_by FROM orchestration_requests
          WHERE status = 'processing'`
      while ((yield* processing()).length < 2) yield* Effect.sleep(20)
      const firstWorker = (yield* processing()).find((r) => r.id === request!.id)!.claimed_by
      // Put back to pending under the running attempt, as a rescue of a lease that ran out would.
      yield* sql`UPDATE orchestration_requests SET status = 'pending', claimed_by = NULL, claimed_at = NULL
        WHERE id = ${request!.id}`
      yield* sql`SELECT pg_notify('stageline_requests', 'released')`
      yield* Fiber.join(worker)
      expect(yield* agentStageEnd(request!.id)).toContain(`no longer held by ${firstWorker}`)
      // The second attempt, in the other fiber, is the one whose outcome is written.
      const results = yield* sql<{ attempt: number; worker_id: string; status: string }>`SELECT attempt, worker_id,
          status FROM orchestration_results WHERE request_id = ${request!.id}`
      expect((yield* sql`SELECT 1 FROM orchestration_results WHERE request_id = ${short!.id}`).length).toBe(1)
      expect(results).toHaveLength(1)
      expect(results[0]).toMatchObject({ attempt: 2, status: "success" })
      expect(results[0]!.worker_id).not.toBe(firstWorker)
    })
  )
})
