import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { DatabaseUrl } from "../../src/db/Database.js"
import { runCli } from "../support/cli.js"
import { TestDatabase } from "../support/TestDatabase.js"

layer(TestDatabase, { excludeTestServices: true, timeout: "90 seconds" })("the operator's commands", (it) => {
  it.effect("status, results, cancel, retry and release-stale do what they say", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const env = { DATABASE_URL: Redacted.value(yield* DatabaseUrl), LOG_LEVEL: "error" }
      const cli = (...args: Array<string>) => Effect.promise(() => runCli(args, env))
      const statusOf = (id: string) =>
        sql<{
          status: string
          attempts: number
        }>`SELECT status, attempts FROM orchestration_requests WHERE id = ${id}`.pipe(Effect.map((r) => r[0]!))
      const [pending] = yield* sql<{
        id: string
      }>`INSERT INTO orchestration_requests (prompt) VALUES ('wait') RETURNING id`
      const [failed] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, status, attempts)
        VALUES ('broke', 'failed', 1) RETURNING id`
      yield* sql`INSERT INTO orchestration_results (request_id, attempt, status, error, duration_ms)
        VALUES (${failed!.id}, 1, 'error', 'the agent exited with code 1', 1200)`
      const [running] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests
          (prompt, status, attempts, claimed_by, claimed_at, lease_expires_at, current_stage)
        VALUES ('busy', 'processing', 1, 'box-1/2', now() - interval '2 hours', now() + interval '1 hour', 'execute-mclaude')
        RETURNING id`

      const status = yield* cli("status")
      expect(status.code).toBe(0)
      expect(status.output).toMatch(/failed\s+1/)
      expect(status.output).toMatch(/pending\s+1/)
      expect(status.output).toMatch(/processing\s+1/)
      expect(status.output).toContain("in flight:")
      expect(status.output).toMatch(
        new RegExp(`${running!.id}\\s+box-1/2\\s+execute-mclaude\\s+1\\s+7\\d{3} s\\s+\\d+ s`)
      )

      const results = yield* cli("results", "--request", failed!.id)
      expect(results.output).toMatch(new RegExp(`${failed!.id}\\s+1\\s+error\\s+1200`))
      expect(results.output).toContain("the agent exited with code 1")

      const cancelled = yield* cli("cancel", pending!.id)
      expect(cancelled.output).toContain("cancelled before it started")
      expect((yield* statusOf(pending!.id)).status).toBe("cancelled")
      const again = yield* cli("cancel", pending!.id)
      expect(again.code).toBe(1)
      expect(again.output).toContain("is already cancelled")

      const retried = yield* cli("retry", failed!.id)
      expect(retried.output).toContain("pending again (attempt 2 next)")
      expect(yield* statusOf(failed!.id)).toEqual({ status: "pending", attempts: 1 })
      const notFinished = yield* cli("retry", running!.id)
      expect(notFinished.code).toBe(1)
      expect(notFinished.output).toContain("is processing; only failed, cancelled or completed requests can be retried")

      // A live lease keeps it; once the lease has run out, it is stale.
      const kept = yield* cli("release-stale", "--older-than", "1h")
      expect(kept.output).toContain("released 0 request(s)")
      yield* sql`UPDATE orchestration_requests SET lease_expires_at = now() - interval '1 second' WHERE id = ${running!.id}`
      const released = yield* cli("release-stale", "--older-than", "1h")
      expect(released.output).toContain("released 1 request(s) claimed more than 1h ago")
      expect((yield* statusOf(running!.id)).status).toBe("pending")
      const badDuration = yield* cli("release-stale", "--older-than", "soon")
      expect(badDuration.code).toBe(1)
      expect(badDuration.output).toContain("--older-than soon is not a duration")
    })
  )
})
