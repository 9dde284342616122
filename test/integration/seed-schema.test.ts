import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import pg from "pg"
import { DatabaseUrl } from "../../src/db/Database.js"
import { TestDatabase } from "../support/TestDatabase.js"

const seedStatements = fs
  .readFileSync(path.join(import.meta.dirname, "..", "fixtures", "seed-readme.sql"), "utf8")
  .split(/\n\s*\n/)
  .map((block) =>
    block
      .split("\n")
      .filter((line) => !line.startsWith("--"))
      .join("\n")
      .trim()
  )
  .filter((statement) => statement !== "")

/** The seed's documented columns with their types (and defaults where it gave them). */
const seedColumns = {
  orchestration_requests: {
    id: "uuid",
    created_at: "timestamp with time zone",
    status: "text",
    repo_url: "text",
    branch: "text",
    prompt: "text",
    config: "jsonb",
    metadata: "jsonb",
    claimed_at: "timestamp with time zone",
    claimed_by: "text"
  },
  orchestration_results: {
    id: "uuid",
    request_id: "uuid",
    status: "text",
    output: "jsonb",
    pr_url: "text",
    commit_sha: "text",
    duration_ms: "integer",
    error: "text",
    created_at: "timestamp with time zone"
  }
} as const

layer(TestDatabase, { excludeTestServices: true, timeout: "30 seconds" })("the schema the seed's users know", (it) => {
  it.effect("runs every SQL statement of the seed README unchanged", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      expect(seedStatements.length).toBe(7)
      for (const statement of seedStatements) yield* sql.unsafe(statement)
      const [pending] = yield* sql<{
        count: string
      }>`SELECT COUNT(*) FROM orchestration_requests WHERE status = 'pending'`
      expect(pending!.count).toBe("1")
    })
  )

  it.effect("has every seed column with its type", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      for (const [table, columns] of Object.entries(seedColumns)) {
        const rows = yield* sql<{ column_name: string; data_type: string }>`SELECT column_name, data_type
            FROM information_schema.columns WHERE table_name = ${table}`
        const actual = Object.fromEntries(rows.map((r) => [r.column_name, r.data_type]))
        for (const [column, type] of Object.entries(columns))
          expect([table, column, actual[column]]).toEqual([table, column, type])
      }
    })
  )

  it.effect("fills the defaults of a plain INSERT (repo_url, prompt) as the seed did", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ id: string; status: string; branch: string; created_at: Date; attempts: number }>`
          INSERT INTO orchestration_requests (repo_url, prompt) VALUES ('https://example.invalid/r.git', 'p')
          RETURNING id, status, branch, created_at, attempts`
      expect(row!.id).toMatch(/^[0-9a-f-]{36}$/)
      expect(row!.status).toBe("pending")
      expect(row!.branch).toBe("main")
      expect(row!.created_at).toBeInstanceOf(Date)
      expect(row!.attempts).toBe(0)
    })
  )

  it.scoped("claims with claim_next_request, skipping rows another transaction holds", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM orchestration_requests`
      yield* sql`INSERT INTO orchestration_requests (prompt, created_at) VALUES ('first', now() - interval '2 minutes'), ('second', now() - interval '1 minute')`
      // Hold the oldest row in another transaction; the claim must skip it, not wait for it.
      const held = yield* Effect.forkScoped(
        sql.withTransaction(
          Effect.gen(function* () {
            yield* sql`SELECT id FROM orchestration_requests WHERE prompt = 'first' FOR UPDATE`
            yield* Effect.sleep("1 second")
          })
        )
      )
      yield* Effect.sleep("200 millis")
      const claimed = yield* sql<{ prompt: string; status: string; claimed_by: string; attempts: number }>`
          SELECT prompt, status, claimed_by, attempts FROM claim_next_request('worker-a')`
      expect(claimed).toEqual([{ prompt: "second", status: "processing", claimed_by: "worker-a", attempts: 1 }])
      yield* held.await
      const next = yield* sql<{ prompt: string }>`SELECT prompt FROM claim_next_request('worker-b')`
      expect(next.map((r) => r.prompt)).toEqual(["first"])
      const none = yield* sql`SELECT * FROM claim_next_request('worker-c')`
      expect(none).toEqual([])
    })
  )

  it.effect("claims higher priority first, and nothing before its run_after", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM orchestration_requests`
      yield* sql`INSERT INTO orchestration_requests (prompt, priority, run_after) VALUES
        ('low', 0, now()), ('high', 5, now()), ('urgent but later', 9, now() + interval '1 hour')`
      const order: Array<string | null> = []
      for (let i = 0; i < 3; i++) {
        const rows = yield* sql<{ prompt: string }>`SELECT prompt FROM claim_next_request('w')`
        order.push(rows[0]?.prompt ?? null)
      }
      expect(order).toEqual(["high", "low", null])
    })
  )

  it.effect("release_stale_requests returns how many it put back to pending", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM orchestration_requests`
      yield* sql`INSERT INTO orchestration_requests (prompt, status, claimed_at, claimed_by) VALUES
          ('old', 'processing', now() - interval '2 hours', 'w'),
          ('new', 'processing', now(), 'w'),
          ('done', 'completed', now() - interval '2 hours', 'w')`
      const [released] = yield* sql<{
        release_stale_requests: number
      }>`SELECT release_stale_requests('30 minutes'::interval)`
      expect(released!.release_stale_requests).toBe(1)
      const rows = yield* sql<{
        prompt: string
        status: string
        claimed_by: string | null
      }>`SELECT prompt, status, claimed_by
          FROM orchestration_requests ORDER BY prompt`
      expect(rows).toEqual([
        { prompt: "done", status: "completed", claimed_by: "w" },
        { prompt: "new", status: "processing", claimed_by: "w" },
        { prompt: "old", status: "pending", claimed_by: null }
      ])
    })
  )

  it.effect("release_stale_requests leaves a request whose worker still renews its lease", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM orchestration_requests`
      yield* sql`INSERT INTO orchestration_requests (prompt, status, claimed_at, claimed_by, lease_expires_at) VALUES
        ('alive', 'processing', now() - interval '2 hours', 'w', now() + interval '30 seconds'),
        ('dead', 'processing', now() - interval '2 hours', 'w', now() - interval '1 minute')`
      const [released] = yield* sql<{ n: number }>`SELECT release_stale_requests('30 minutes'::interval) AS n`
      expect(released!.n).toBe(1)
      const rows = yield* sql<{
        prompt: string
        status: string
      }>`SELECT prompt, status FROM orchestration_requests ORDER BY prompt`
      expect(rows).toEqual([
        { prompt: "alive", status: "processing" },
        { prompt: "dead", status: "pending" }
      ])
    })
  )

  it.effect("rescue finishes a cancelled request whose worker died, and retries a crash only when told to", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM orchestration_results`
      yield* sql`DELETE FROM orchestration_requests`
      yield* sql`INSERT INTO orchestration_requests (prompt, status, attempts, claimed_by, lease_expires_at) VALUES
        ('cancelled', 'cancelled', 1, 'w', now() - interval '1 minute'),
        ('crashed', 'processing', 1, 'w', now() - interval '1 minute')`
      const rescued = yield* sql<{
        status: string
      }>`SELECT status FROM rescue_expired_leases(3, interval '0', false) ORDER BY status`
      expect(rescued.map((r) => r.status)).toEqual(["cancelled", "failed"])
      const results = yield* sql<{
        prompt: string
        status: string
      }>`SELECT q.prompt, r.status FROM orchestration_results r
        JOIN orchestration_requests q ON q.id = r.request_id ORDER BY q.prompt`
      expect(results).toEqual([
        { prompt: "cancelled", status: "cancelled" },
        { prompt: "crashed", status: "error" }
      ])
    })
  )

  it.effect("claims through the partial index however many rows have finished", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO orchestration_requests (prompt, status) SELECT 'done ' || g, 'completed' FROM generate_series(1, 5000) g`
      yield* sql`INSERT INTO orchestration_requests (prompt) VALUES ('waiting')`
      yield* sql`ANALYZE orchestration_requests`
      const plan = yield* sql<{ "QUERY PLAN": string }>`EXPLAIN SELECT id FROM orchestration_requests
          WHERE status = 'pending' AND run_after <= now() ORDER BY priority DESC, run_after, created_at LIMIT 1 FOR UPDATE SKIP LOCKED`
      expect(plan.map((r) => r["QUERY PLAN"]).join("\n")).toContain("orchestration_requests_claim_idx")
    })
  )

  it.effect("notifies listeners once per insert statement", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const client = new pg.Client({ connectionString: Redacted.value(yield* DatabaseUrl) })
      yield* Effect.promise(() => client.connect())
      const received: Array<string> = []
      client.on("notification", (m) => received.push(`${m.channel}:${m.payload}`))
      yield* Effect.promise(() => client.query("LISTEN stageline_requests"))
      yield* sql`INSERT INTO orchestration_requests (prompt) VALUES ('a'), ('b'), ('c')`
      yield* Effect.sleep("300 millis")
      yield* Effect.promise(() => client.end())
      expect(received).toEqual(["stageline_requests:inserted"])
    })
  )
})
