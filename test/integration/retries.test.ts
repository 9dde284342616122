import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

const stages = "\n  - claim\n  - prepare-workspace\n  - execute-mclaude\n  - record\n"

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("attempts and retries", (it) => {
  const attemptsOf = (id: string) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.all({
        request: sql<{
          status: string
          attempts: number
          last_error: string | null
        }>`SELECT status, attempts, last_error
          FROM orchestration_requests WHERE id = ${id}`.pipe(Effect.map((r) => r[0]!)),
        results: sql<{ attempt: number; status: string }>`SELECT attempt, status FROM orchestration_results
          WHERE request_id = ${id} ORDER BY attempt`
      })
    )
  const insert = (prompt: string, extra: { config?: unknown; max_attempts?: number } = {}) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, config, max_attempts)
        VALUES (${prompt}, ${extra.config === undefined ? null : JSON.stringify(extra.config)}::jsonb, ${extra.max_attempts ?? null})
        RETURNING id`.pipe(Effect.map((r) => r[0]!.id))
    )

  it.effect("retries a timed-out attempt up to max_attempts, each attempt with its own result row", () =>
    Effect.gen(function* () {
      const id = yield* insert("@sleep 20000", { config: { timeout_minutes: 0.005 } })
      yield* runOnce(writePipeline({ stages }).file, { maxAttempts: 3, retryOn: ["timeout"], retryBackoffMs: 0 })
      const { request, results } = yield* attemptsOf(id)
      expect(results).toEqual([
        { attempt: 1, status: "timeout" },
        { attempt: 2, status: "timeout" },
        { attempt: 3, status: "timeout" }
      ])
      expect(request).toMatchObject({ status: "failed", attempts: 3 })
    })
  )

  it.effect("takes the request's own max_attempts over the pipeline's", () =>
    Effect.gen(function* () {
      const id = yield* insert("@sleep 20000", { config: { timeout_minutes: 0.005 }, max_attempts: 2 })
      yield* runOnce(writePipeline({ stages }).file, { maxAttempts: 5, retryOn: ["timeout"], retryBackoffMs: 0 })
      expect((yield* attemptsOf(id)).results).toHaveLength(2)
    })
  )

  it.effect("retries a crash, and the next attempt can succeed", () =>
    Effect.gen(function* () {
      const marker = path.join(tempDir("marker"), "failed-once")
      const killed = yield* insert("@kill-self")
      const flaky = yield* insert(`@fail-once ${marker}`)
      yield* runOnce(writePipeline({ stages }).file, {
        maxAttempts: 2,
        retryOn: ["crash", "error"],
        retryBackoffMs: 0
      })
      const k = yield* attemptsOf(killed)
      expect(k.results).toEqual([
        { attempt: 1, status: "error" },
        { attempt: 2, status: "error" }
      ])
      expect(k.request.last_error).toContain("killed by SIGKILL")
      const f = yield* attemptsOf(flaky)
      expect(f.results).toEqual([
        { attempt: 1, status: "error" },
        { attempt: 2, status: "success" }
      ])
      expect(f.request.status).toBe("completed")
    })
  )

  it.effect("never retries a bad request, nor a failure whose kind retry_on leaves out", () =>
    Effect.gen(function* () {
      const bad = yield* insert("@say hi", { config: { timeout_minutes: -1 } })
      const erroring = yield* insert("@crash")
      yield* runOnce(writePipeline({ stages }).file, {
        maxAttempts: 3,
        retryOn: ["timeout", "crash"],
        retryBackoffMs: 0
      })
      expect((yield* attemptsOf(bad)).results).toEqual([{ attempt: 1, status: "error" }])
      expect((yield* attemptsOf(erroring)).results).toEqual([{ attempt: 1, status: "error" }])
      expect((yield* attemptsOf(erroring)).request.status).toBe("failed")
    })
  )

  it.effect("waits the backoff before the next attempt", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const id = yield* insert("@crash")
      yield* runOnce(writePipeline({ stages }).file, { maxAttempts: 2, retryOn: ["error"], retryBackoffMs: 60_000 })
      // --once stops when nothing is due: the second attempt is scheduled a minute out.
      const [row] = yield* sql<{ status: string; wait: number }>`SELECT status,
          extract(epoch FROM run_after - now())::float8 AS wait FROM orchestration_requests WHERE id = ${id}`
      expect(row!.status).toBe("pending")
      expect(row!.wait).toBeGreaterThan(50)
      expect(row!.wait).toBeLessThanOrEqual(60)
    })
  )

  it.effect("never claims a request cancelled while pending", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const id = yield* insert("@say hi")
      yield* sql`UPDATE orchestration_requests SET status = 'cancelled' WHERE id = ${id}`
      const summary = yield* runOnce(writePipeline({ stages }).file)
      expect(summary.processed).toBe(0)
      const { request, results } = yield* attemptsOf(id)
      expect(request).toMatchObject({ status: "cancelled", attempts: 0 })
      expect(results).toEqual([])
    })
  )
})
