/**
 * Claims and records that many fibers make at the same moment go out together, one statement for the lot
 * (src/db/Batcher.ts). Each call must still get exactly what it would have got alone.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Duration, Effect, Fiber, Option, Redacted } from "effect"
import pg from "pg"
import { DatabaseUrl } from "../../src/db/Database.js"
import { Queue, type ResultRow } from "../../src/queue/Queue.js"
import { explainInto, ownConnection } from "../support/autoExplain.js"
import { TestDatabase } from "../support/TestDatabase.js"

const resultOf = (requestId: string, workerId: string, status: ResultRow["status"], attempt = 1): ResultRow => ({
  requestId,
  attempt,
  workerId,
  status,
  output: { stdout: `${status} from ${workerId}`, nul: "a\u0000b" },
  prUrl: null,
  commitSha: null,
  branchName: null,
  durationMs: 5,
  error: status === "success" ? null : `${status} for ${workerId}`,
  sessionId: null,
  model: null,
  numTurns: 2,
  costUsd: 0.25,
  usage: { input_tokens: 3 }
})

/**
 * `n` requests processing, held by w/1 … w/n, and 499 result rows of the first one's other attempts in a
 * result table never analyzed: the planner takes it for a few rows, and reading it whole looks cheap.
 */
const heldBesideUnanalyzedResults = (n: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
    const ids = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, status, attempts, claimed_by)
      SELECT 'p' || i, 'processing', 1, 'w/' || i FROM generate_series(1, ${n}) AS i RETURNING id`
    yield* sql`INSERT INTO orchestration_results (request_id, attempt, status)
      SELECT ${ids[0]!.id}::uuid, i, 'error' FROM generate_series(2, 500) AS i`
    return ids
  })

/** record_attempts run once on a connection of its own, with the plan of every statement inside it. */
const recordExplained = (attempts: ReadonlyArray<unknown>) =>
  ownConnection((client) =>
    Effect.promise(async () => {
      const notices: Array<string> = []
      await explainInto(client, notices)
      const { rows } = await client.query("SELECT * FROM record_attempts($1::jsonb)", [JSON.stringify(attempts)])
      return { rows, notices }
    })
  )

/**
 * A transaction of another connection, open until the scope closes (or its client says ROLLBACK), that ran
 * `statement`: the locks it took are held meanwhile.
 */
const lockedElsewhere = (statement: string, values: Array<unknown>) =>
  Effect.flatMap(DatabaseUrl, (url) =>
    Effect.acquireRelease(
      Effect.promise(async () => {
        const client = new pg.Client({ connectionString: Redacted.value(url) })
        await client.connect()
        await client.query("BEGIN")
        await client.query(statement, values)
        return client
      }),
      (client) => Effect.promise(() => client.query("ROLLBACK").then(() => client.end()))
    )
  )

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("grouped claims and records", (it) => {
  it.effect("concurrent claims share one statement, and each fiber gets a request of its own or none", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* Queue
      yield* sql`INSERT INTO orchestration_requests (prompt, priority)
        SELECT 'p' || n, n FROM generate_series(1, 5) AS n`
      const workers = Array.from({ length: 8 }, (_, i) => `w/${i + 1}`)
      const claims = yield* Effect.forEach(workers, (w) => queue.claim(w, 60_000), { concurrency: "unbounded" })
      const claimed = claims.flatMap((c, i) =>
        Option.isSome(c) ? [{ worker: workers[i]!, request: c.value.request }] : []
      )
      expect(claimed).toHaveLength(5)
      expect(new Set(claimed.map((c) => c.request.id)).size).toBe(5)
      for (const c of claimed) {
        expect(c.request.claimed_by).toBe(c.worker)
        expect(c.request.attempts).toBe(1)
      }
      // Highest priority first, to the fibers in the order they asked.
      expect(claimed.map((c) => c.request.prompt)).toEqual(["p5", "p4", "p3", "p2", "p1"])
      const rows = yield* sql<{ claimed_by: string; claimed_at: Date; status: string }>`SELECT claimed_by, claimed_at,
          status FROM orchestration_requests ORDER BY claimed_by`
      expect(rows.map((r) => r.status)).toEqual(Array(5).fill("processing"))
      // One statement claimed them all: one transaction, so one now().
      expect(new Set(rows.map((r) => r.claimed_at.getTime())).size).toBe(1)
      // And nothing is left for the next one.
      expect(Option.isNone(yield* queue.claim("w/9", 60_000))).toBe(true)
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("concurrent records share one statement, and each gets its own outcome", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* Queue
      yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
      const insert = (prompt: string, maxAttempts: number | null = null) =>
        sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, status, attempts, claimed_by, max_attempts)
          VALUES (${prompt}, 'processing', 1, ${`w/${prompt}`}, ${maxAttempts}) RETURNING id`.pipe(
          Effect.map((r) => r[0]!.id)
        )
      const done = yield* insert("done")
      const again = yield* insert("again", 3)
      const lost = yield* insert("lost")
      const twice = yield* insert("twice")
      const noRetry = { retryable: false, maxAttempts: 1, backoffMs: 0 }
      // Recorded once already, as if the answer to an earlier try was lost.
      expect(yield* queue.record(resultOf(twice, "w/twice", "success"), noRetry)).toBe("recorded")
      const outcomes = yield* Effect.all(
        [
          queue.record(resultOf(done, "w/done", "success"), noRetry),
          queue.record(resultOf(again, "w/again", "error"), { retryable: true, maxAttempts: 1, backoffMs: 60_000 }),
          queue.record(resultOf(lost, "w/somebody-else", "success"), noRetry),
          queue.record(resultOf(twice, "w/twice", "success"), noRetry)
        ],
        { concurrency: "unbounded" }
      )
      expect(outcomes).toEqual(["recorded", "retrying", "not-owner", "already-recorded"])
      const requests = yield* sql<{
        prompt: string
        status: string
        claimed_by: string | null
        last_error: string | null
        later: boolean
      }>`SELECT prompt, status, claimed_by, last_error, run_after > now() + interval '50 seconds' AS later
          FROM orchestration_requests ORDER BY prompt`
      expect(requests).toEqual([
        // The request's own max_attempts (3) beats the policy's (1); the backoff holds it back.
        { prompt: "again", status: "pending", claimed_by: null, last_error: "error for w/again", later: true },
        { prompt: "done", status: "completed", claimed_by: "w/done", last_error: null, later: false },
        { prompt: "lost", status: "processing", claimed_by: "w/lost", last_error: null, later: false },
        { prompt: "twice", status: "completed", claimed_by: "w/twice", last_error: null, later: false }
      ])
      const results = yield* sql<{
        request_id: string
        status: string
        worker_id: string
        output: { stdout: string; nul: string }
        num_turns: number
        cost_usd: string
        usage: unknown
        created_at: Date
      }>`SELECT request_id, status, worker_id, output, num_turns, cost_usd, usage, created_at
          FROM orchestration_results ORDER BY worker_id`
      expect(results.map((r) => [r.request_id, r.status, r.worker_id])).toEqual([
        [again, "error", "w/again"],
        [done, "success", "w/done"],
        [twice, "success", "w/twice"]
      ])
      // Every column arrives as it would alone, text cleaned as always (PostgreSQL holds no NUL).
      expect(results[0]).toMatchObject({
        output: { stdout: "error from w/again", nul: "ab" },
        num_turns: 2,
        cost_usd: "0.250000",
        usage: { input_tokens: 3 }
      })
      // The two written in the batch were written by one statement.
      expect(results[0]!.created_at.getTime()).toBe(results[1]!.created_at.getTime())
      expect(results[2]!.created_at.getTime()).not.toBe(results[0]!.created_at.getTime())
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("a record alone decides and writes exactly what the same record in a group does", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* Queue
      const noRetry = { retryable: false, maxAttempts: 1, backoffMs: 0 }
      const retry = { retryable: true, maxAttempts: 1, backoffMs: 60_000 }
      // Every outcome record can have, each on a request of its own, recorded one at a time (each alone,
      // so through the statement for one) or all at once (one statement for the group).
      const scenario = (together: boolean) =>
        Effect.gen(function* () {
          yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
          const insert = (prompt: string, status: string, maxAttempts: number | null = null) =>
            sql<{ id: string }>`INSERT INTO orchestration_requests
                (prompt, status, attempts, claimed_by, claimed_at, max_attempts, lease_expires_at, current_stage)
              VALUES (${prompt}, ${status}, 1, ${`w/${prompt}`}, now(), ${maxAttempts}, now() + interval '1 minute',
                'noop')
              RETURNING id`.pipe(Effect.map((r) => r[0]!.id))
          const ids = {
            done: yield* insert("done", "processing"),
            again: yield* insert("again", "processing", 3),
            spent: yield* insert("spent", "processing"),
            lost: yield* insert("lost", "processing"),
            twice: yield* insert("twice", "processing"),
            cancelled: yield* insert("cancelled", "cancelled"),
            bare: yield* insert("bare", "processing")
          }
          yield* queue.record(resultOf(ids.twice, "w/twice", "success"), noRetry)
          const records = [
            queue.record(resultOf(ids.done, "w/done", "success"), noRetry),
            queue.record(resultOf(ids.again, "w/again", "error"), retry),
            queue.record(resultOf(ids.spent, "w/spent", "timeout"), retry),
            queue.record(resultOf(ids.lost, "w/somebody-else", "success"), noRetry),
            queue.record(resultOf(ids.twice, "w/twice", "success"), noRetry),
            queue.record(resultOf(ids.cancelled, "w/cancelled", "success"), noRetry),
            queue.record(
              { ...resultOf(ids.bare, "w/bare", "partial"), output: null, usage: null, costUsd: null },
              noRetry
            )
          ]
          const outcomes = yield* Effect.all(records, { concurrency: together ? "unbounded" : 1 })
          const requests = yield* sql`SELECT prompt, status, attempts, claimed_by, claimed_at IS NULL AS unclaimed,
              last_error, run_after > now() + interval '50 seconds' AS later, finished_at IS NULL AS unfinished,
              lease_expires_at IS NULL AS unleased, current_stage
            FROM orchestration_requests ORDER BY prompt`
          const results = yield* sql`SELECT q.prompt, r.attempt, r.worker_id, r.status, r.output, r.pr_url,
              r.commit_sha, r.branch_name, r.duration_ms, r.error, r.session_id, r.model, r.num_turns, r.cost_usd,
              r.usage, r.output IS NULL AS no_output, r.usage IS NULL AS no_usage
            FROM orchestration_results AS r JOIN orchestration_requests AS q ON q.id = r.request_id
            ORDER BY q.prompt, r.attempt`
          const statements = yield* sql<{ n: number }>`SELECT count(DISTINCT created_at)::int AS n
            FROM orchestration_results`
          return { outcomes, requests, results, statements: statements[0]!.n }
        })
      const alone = yield* scenario(false)
      const together = yield* scenario(true)
      expect(alone.outcomes).toEqual([
        "recorded",
        "retrying",
        "recorded",
        "not-owner",
        "already-recorded",
        "recorded",
        "recorded"
      ])
      // The earlier record of "twice", then one statement per record alone, or one for the group.
      expect(alone.statements).toBe(6)
      expect(together.statements).toBe(2)
      expect(together.outcomes).toEqual(alone.outcomes)
      expect(together.requests).toEqual(alone.requests)
      expect(together.results).toEqual(alone.results)
      // A request cancelled meanwhile stays cancelled; an absent output is no output, not JSON null.
      expect(alone.requests.find((r) => r.prompt === "cancelled")).toMatchObject({ status: "cancelled" })
      expect(alone.results.find((r) => r.prompt === "bare")).toMatchObject({ no_output: true, no_usage: true })
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("neither claims nor records wait on the key-share locks that inserting events takes", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* Queue
      yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
      const [pending] = yield* sql<{
        id: string
      }>`INSERT INTO orchestration_requests (prompt) VALUES ('p') RETURNING id`
      const [held] = yield* sql<{
        id: string
      }>`INSERT INTO orchestration_requests (prompt, status, attempts, claimed_by)
        VALUES ('h', 'processing', 1, 'w/held') RETURNING id`
      // What an event insert's foreign-key check holds until its commit, on both rows.
      yield* lockedElsewhere("SELECT 1 FROM orchestration_requests WHERE id = ANY ($1::uuid[]) FOR KEY SHARE", [
        [pending!.id, held!.id]
      ])
      // Under FOR UPDATE the claim skipped the row and the record waited for the other transaction.
      const claimed = yield* queue.claim("w/1", 60_000).pipe(Effect.timeout(Duration.seconds(5)))
      expect(Option.map(claimed, (c) => c.request.id)).toEqual(Option.some(pending!.id))
      const outcome = yield* queue
        .record(resultOf(held!.id, "w/held", "success"), { retryable: false, maxAttempts: 1, backoffMs: 0 })
        .pipe(Effect.timeout(Duration.seconds(5)))
      expect(outcome).toBe("recorded")
    }).pipe(Effect.provide(Queue.layer), Effect.scoped)
  )
  it.effect(
    "a worker of 16 fibers records in two groups, each fiber always in its own, neither waiting on the other",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const queue = yield* Queue
        const workers = Array.from({ length: 16 }, (_, i) => `w/${i + 1}`)
        yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
        const held = yield* sql<{ id: string; claimed_by: string }>`INSERT INTO orchestration_requests
          (prompt, status, attempts, claimed_by)
        SELECT 'p', 'processing', 1, w FROM unnest(${workers}::text[]) AS w RETURNING id, claimed_by`
        const idOf = new Map(held.map((r) => [r.claimed_by, r.id]))
        const noRetry = { retryable: false, maxAttempts: 1, backoffMs: 0 }
        const recordAll = (order: ReadonlyArray<string>, attempt: number) =>
          Effect.forEach(order, (w) => queue.record(resultOf(idOf.get(w)!, w, "success", attempt), noRetry), {
            concurrency: "unbounded"
          })
        /** The workers whose attempt was written by the same statement (one transaction, so one now()). */
        const statementsOf = (attempt: number) =>
          Effect.map(
            sql<{ workers: Array<string> }>`SELECT array_agg(worker_id ORDER BY worker_id) AS workers
              FROM orchestration_results WHERE attempt = ${attempt} GROUP BY created_at ORDER BY min(worker_id)`,
            (rows) => rows.map((r) => [...r.workers].sort())
          )
        // Another transaction holds w/1's row, so the statement that records w/1 waits for it.
        const other = yield* lockedElsewhere("SELECT 1 FROM orchestration_requests WHERE id = $1 FOR UPDATE", [
          idOf.get("w/1")
        ])
        const first = yield* Effect.fork(recordAll(workers, 1))
        // The fibers take the groups in turn as they first record: w/2, w/4, … are in the group without w/1.
        const evens = workers.filter((_, i) => i % 2 === 1).sort()
        const odds = workers.filter((_, i) => i % 2 === 0).sort()
        let written: Array<Array<string>> = []
        for (let tries = 0; tries < 250 && written.flat().length < 8; tries++) {
          yield* Effect.sleep(Duration.millis(20))
          written = yield* statementsOf(1)
        }
        expect(written).toEqual([evens])
        yield* Effect.promise(() => other.query("ROLLBACK"))
        expect(yield* Fiber.join(first)).toEqual(Array(16).fill("recorded"))
        expect(yield* statementsOf(1)).toEqual([odds, evens].sort((a, b) => a[0]!.localeCompare(b[0]!)))
        // Each fiber stays in its group, in whatever order they come (taken in turn, these would split anew).
        yield* sql`UPDATE orchestration_requests SET status = 'processing', attempts = 2`
        expect(yield* recordAll([...odds, ...evens], 2)).toEqual(Array(16).fill("recorded"))
        expect(yield* statementsOf(2)).toEqual(yield* statementsOf(1))
      }).pipe(Effect.provide(Queue.layerFor(16)), Effect.scoped)
  )

  it.effect("a group's record looks up result rows by their key, however small the planner thinks the table is", () =>
    Effect.gen(function* () {
      const ids = yield* heldBesideUnanalyzedResults(3)
      const attempts = [
        { request_id: ids[0]!.id, worker_id: "w/1" },
        { request_id: ids[1]!.id, worker_id: "w/2" },
        // Not w/3's worker: the one attempt whose result row is looked for.
        { request_id: ids[2]!.id, worker_id: "w/somebody-else" }
      ].map((a) => ({ ...a, attempt: 1, status: "success", final: "completed", may_retry: false, max_attempts: 1 }))
      const plans = yield* recordExplained(attempts)
      expect(plans.rows).toEqual([
        { status: "completed", existing: false },
        { status: "completed", existing: false },
        { status: null, existing: false }
      ])
      const recordPlan = plans.notices.find((n) => n.includes("INSERT INTO orchestration_results"))
      expect(recordPlan).toBeDefined()
      expect(recordPlan).not.toContain("Seq Scan on orchestration_results")
      expect(recordPlan).toContain("orchestration_results_request_attempt_key")
    })
  )
  it.effect("a lone record looks for no result row when it records the attempt", () =>
    Effect.gen(function* () {
      const ids = yield* heldBesideUnanalyzedResults(2)
      const attempt = { attempt: 1, status: "success", final: "completed", may_retry: false, max_attempts: 1 }
      const recorded = yield* recordExplained([{ ...attempt, request_id: ids[1]!.id, worker_id: "w/2" }])
      expect(recorded.rows).toEqual([{ status: "completed", existing: false }])
      const plan = recorded.notices.find((n) => n.includes("INSERT INTO orchestration_results"))
      expect(plan).toBeDefined()
      // The lookup is in the plan, for an attempt that was not recorded, but it did not run.
      expect(plan).toMatch(/Scan (using \S+ )?on orchestration_results r .*\(never executed\)/)
      // The attempt that was not this worker's is still told apart from a repeated record.
      const notOwner = yield* recordExplained([{ ...attempt, request_id: ids[0]!.id, worker_id: "w/somebody-else" }])
      expect(notOwner.rows).toEqual([{ status: null, existing: false }])
    })
  )
})
