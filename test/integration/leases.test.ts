/**
 * One heartbeat per worker process renews the leases of every request it runs (src/queue/Lease.ts), and
 * what it finds stops the runs it must: a request cancelled while no notification came, and a request that
 * is no longer this worker's.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { runOnce, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

const stages = `
  - claim
  - prepare-workspace
  - execute-mclaude
  - record
`

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
      const [stopped] = yield* sql<{ message: string }>`SELECT message FROM orchestration_events
        WHERE request_id = ${lost!.id} AND kind = 'stage-finished' AND stage = 'execute-mclaude'`
      expect(stopped?.message).toContain("no longer held by")
    })
  )
})
