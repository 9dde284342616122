/**
 * A worker whose run ends with record claims its next request in record's own statement (Queue.record's
 * `next`): one round trip and one commit a request instead of two. The request so claimed must be the one
 * the worker's next claim takes, never be left held when the worker stops or waits too long, and be
 * stopped at once if it is cancelled before its run watches it.
 */
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Queue } from "../../src/queue/Queue.js"
import { Wakeups } from "../../src/queue/Wakeups.js"
import { runOnce, writePipeline } from "../support/harness.js"
import { successOf } from "../support/resultRows.js"
import { TestDatabase } from "../support/TestDatabase.js"

const noRetry = { retryable: false, maxAttempts: 1, backoffMs: 0 }

/** A request `workerId` holds, as its claim left it; and pending ones, highest priority first. */
const setUp = (workers: ReadonlyArray<string>, pending: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
    const held: Array<string> = []
    for (const w of workers) {
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests
          (prompt, status, attempts, claimed_by, claimed_at, lease_expires_at)
        VALUES (${`held by ${w}`}, 'processing', 1, ${w}, now(), now() + interval '1 minute') RETURNING id`
      held.push(row!.id)
    }
    const waiting: Array<string> = []
    for (const [i, prompt] of pending.entries()) {
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, priority)
        VALUES (${prompt}, ${pending.length - i}) RETURNING id`
      waiting.push(row!.id)
    }
    return { held, waiting }
  })

const rowOf = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{
        status: string
        claimed_by: string | null
        attempts: number
        claimed_at: Date | null
        finished_at: Date | null
      }>`SELECT status, claimed_by, attempts, claimed_at, finished_at FROM orchestration_requests WHERE id = ${id}`,
      (rows) => rows[0]!
    )
  )

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("claiming ahead", (it) => {
  it.effect("a record that asks claims the worker's next request in its statement, and the next claim takes it", () =>
    Effect.gen(function* () {
      const queue = yield* Queue
      const { held, waiting } = yield* setUp(["w/1"], ["first", "second"])
      expect(yield* queue.record(successOf(held[0]!, "w/1"), noRetry, { leaseMs: 60_000 })).toBe("recorded")

      const recorded = yield* rowOf(held[0]!)
      const ahead = yield* rowOf(waiting[0]!)
      expect(recorded.status).toBe("completed")
      expect(ahead).toMatchObject({ status: "processing", claimed_by: "w/1", attempts: 1 })
      // One statement, one transaction: one now().
      expect(ahead.claimed_at!.getTime()).toBe(recorded.finished_at!.getTime())
      expect((yield* rowOf(waiting[1]!)).status).toBe("pending")

      const before = Date.now()
      const claimed = yield* queue.claim("w/1", 60_000)
      expect(Option.map(claimed, (c) => c.request.id)).toEqual(Option.some(waiting[0]!))
      // Its lease counts from the record's statement, sent before this claim.
      expect(Option.getOrThrow(claimed).sentAt).toBeLessThanOrEqual(before)
      // The claim took it without a statement: the other request is still pending.
      expect((yield* rowOf(waiting[1]!)).status).toBe("pending")
      // The next claim goes to the queue.
      expect(Option.map(yield* queue.claim("w/1", 60_000), (c) => c.request.id)).toEqual(Option.some(waiting[1]!))
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("records made together claim together, each worker a request of its own or none", () =>
    Effect.gen(function* () {
      const queue = yield* Queue
      const workers = ["w/1", "w/2", "w/3"]
      const { held, waiting } = yield* setUp(workers, ["a", "b"])
      const outcomes = yield* Effect.forEach(
        workers,
        (w, i) => queue.record(successOf(held[i]!, w), noRetry, { leaseMs: 60_000 }),
        { concurrency: "unbounded" }
      )
      expect(outcomes).toEqual(["recorded", "recorded", "recorded"])
      const rows = yield* Effect.forEach(waiting, rowOf)
      expect(rows.map((r) => r.status)).toEqual(["processing", "processing"])
      expect(new Set(rows.map((r) => r.claimed_by)).size).toBe(2)
      expect(new Set(rows.map((r) => r.claimed_at!.getTime())).size).toBe(1)

      const claims = yield* Effect.forEach(workers, (w) => queue.claim(w, 60_000))
      const taken = claims.flatMap((c, i) => (Option.isSome(c) ? [[workers[i], c.value.request.id]] : []))
      expect(taken).toHaveLength(2)
      for (const [worker, id] of taken) expect((yield* rowOf(id!)).claimed_by).toBe(worker)
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("a request claimed ahead and left too long goes back by itself, and the claim takes one anew", () =>
    Effect.gen(function* () {
      const queue = yield* Queue
      const { held, waiting } = yield* setUp(["w/1"], ["only"])
      // A lease of 1 s: a tenth of it is fresh.
      yield* queue.record(successOf(held[0]!, "w/1"), noRetry, { leaseMs: 1_000 })
      const firstClaim = (yield* rowOf(waiting[0]!)).claimed_at!
      yield* Effect.sleep(250)
      // Put back without the worker coming for it: its lease was running out unrenewed.
      expect(yield* rowOf(waiting[0]!)).toMatchObject({ status: "pending", claimed_by: null, attempts: 0 })
      const before = Date.now()
      const claimed = Option.getOrThrow(yield* queue.claim("w/1", 1_000))
      expect(claimed.request.id).toBe(waiting[0]!)
      expect(claimed.sentAt).toBeGreaterThanOrEqual(before)
      const row = yield* rowOf(waiting[0]!)
      // Put back (the attempt not counted), then claimed again by a statement of its own.
      expect(row).toMatchObject({ status: "processing", claimed_by: "w/1", attempts: 1 })
      expect(row.claimed_at!.getTime()).toBeGreaterThan(firstClaim.getTime())
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("a worker that stops claiming, or stops, puts back what was claimed ahead for it", () =>
    Effect.gen(function* () {
      const { held, waiting } = yield* setUp(["w/1", "w/2"], ["a", "b"])
      const pendingAgain = { status: "pending", claimed_by: null, attempts: 0 }
      yield* Effect.gen(function* () {
        const queue = yield* Queue
        yield* queue.record(successOf(held[0]!, "w/1"), noRetry, { leaseMs: 60_000 })
        expect((yield* rowOf(waiting[0]!)).status).toBe("processing")
        yield* queue.releaseAhead("w/1")
        expect(yield* rowOf(waiting[0]!)).toMatchObject(pendingAgain)
        yield* queue.record(successOf(held[1]!, "w/2"), noRetry, { leaseMs: 60_000 })
        expect((yield* rowOf(waiting[0]!)).claimed_by).toBe("w/2")
      }).pipe(Effect.provide(Queue.layer))
      // The queue has closed: what w/2 had not taken is pending again.
      expect(yield* rowOf(waiting[0]!)).toMatchObject(pendingAgain)
      expect((yield* rowOf(waiting[1]!)).status).toBe("pending")
    })
  )

  it.effect(
    "a request claimed ahead and cancelled before its worker took it ends cancelled, its attempt not counted",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const queue = yield* Queue
        const { held, waiting } = yield* setUp(["w/1"], ["cancelled ahead"])
        yield* queue.record(successOf(held[0]!, "w/1"), noRetry, { leaseMs: 60_000 })
        yield* sql`UPDATE orchestration_requests SET status = 'cancelled' WHERE id = ${waiting[0]!}`
        // The worker stops without taking it.
        yield* queue.releaseAhead("w/1")
        const row = yield* rowOf(waiting[0]!)
        expect(row).toMatchObject({ status: "cancelled", claimed_by: null, attempts: 0 })
        expect(row.finished_at).not.toBeNull()
        const [results] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM orchestration_results
        WHERE request_id = ${waiting[0]!}`
        expect(results!.n).toBe(0)
      }).pipe(Effect.provide(Queue.layer))
  )

  it.effect(
    "a cancel heard before the run watched its request stops it at once; one heard before its claim does not",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const wakeups = yield* Wakeups
        // Listening once the first wake-up (on connecting) has come.
        while ((yield* wakeups.ticket) === 0) yield* Effect.sleep(20)
        const { held } = yield* setUp(["w/1", "w/2"], [])
        const claimedAt = Date.now()
        yield* sql`UPDATE orchestration_requests SET status = 'cancelled' WHERE id IN ${sql.in(held)}`
        // Time for the notifications to come, with nobody watching either request.
        yield* Effect.sleep(500)
        let stopped = 0
        wakeups.watchCancel(held[0]!, claimedAt, () => stopped++)
        expect(stopped).toBe(1)
        // Claimed after the cancel was heard: the cancel was about an earlier claim of it.
        const unwatch = wakeups.watchCancel(held[1]!, Date.now(), () => stopped++)
        unwatch()
        expect(stopped).toBe(1)
      }).pipe(Effect.provide(Wakeups.layer))
  )

  it.effect("a worker whose runs are quick holds several ahead, and every request still ends once", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
      yield* sql`INSERT INTO orchestration_requests (prompt) SELECT 'quick ' || i FROM generate_series(1, 60) AS i`
      yield* runOnce(writePipeline({ stages: "\n  - claim\n  - record\n" }).file)
      const rows = yield* sql<{ status: string; attempts: number; results: number; claimed_at: Date }>`SELECT status,
          attempts, claimed_at, (SELECT count(*)::int FROM orchestration_results AS r WHERE r.request_id = q.id) AS results
        FROM orchestration_requests AS q`
      expect(rows.filter((r) => r.status !== "completed" || r.attempts !== 1 || r.results !== 1)).toEqual([])
      // Requests claimed by one statement share its now(): some statement claimed more than one.
      const together = new Map<number, number>()
      for (const r of rows) together.set(r.claimed_at.getTime(), (together.get(r.claimed_at.getTime()) ?? 0) + 1)
      expect(Math.max(...together.values())).toBeGreaterThan(1)
    })
  )

  it.effect("the worker claims ahead only when nothing but its next claim follows record", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const plugin = path.join(import.meta.dirname, "..", "fixtures", "plugins", "one-stage.ts")
      /** Whether the second request was claimed by the statement that finished the first. */
      const claimedInRecord = (stages: string, top = "") =>
        Effect.gen(function* () {
          yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
          yield* sql`INSERT INTO orchestration_requests (prompt, priority) VALUES ('first', 2), ('second', 1)`
          yield* runOnce(writePipeline({ stages, top }).file)
          const rows = yield* sql<{ claimed_at: Date; finished_at: Date; status: string }>`SELECT claimed_at,
              finished_at, status FROM orchestration_requests ORDER BY priority DESC`
          expect(rows.map((r) => r.status)).toEqual(["completed", "completed"])
          return rows[1]!.claimed_at.getTime() === rows[0]!.finished_at.getTime()
        })
      expect(yield* claimedInRecord("\n  - claim\n  - record\n")).toBe(true)
      expect(yield* claimedInRecord("\n  - claim\n  - record\n  - one-stage\n", `plugins:\n  - ${plugin}`)).toBe(false)
    })
  )
})
