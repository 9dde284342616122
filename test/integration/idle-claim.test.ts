/**
 * An idle worker fiber does not wake to a notification to claim: the notification's own callback claims
 * for every idle fiber of the process in one statement (Queue.claimIdle), and a fiber wakes to the request
 * held for it. One that got none waits on, for the next notification.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import { type IdleClaimOutcome, Queue } from "../../src/queue/Queue.js"
import { runWorker, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

const truncate = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
)

const insert = (prompt: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ id: string }>`INSERT INTO orchestration_requests (prompt) VALUES (${prompt}) RETURNING id`,
      (rows) => rows[0]!.id
    )
  )

interface Row {
  readonly status: string
  readonly claimed_by: string | null
  readonly claimed_at: Date | null
  readonly finished_at: Date | null
  readonly attempts: number
}

const rowOf = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<Row>`SELECT status, claimed_by, claimed_at, finished_at, attempts FROM orchestration_requests WHERE id = ${id}`,
      (rows) => rows[0]!
    )
  )

/** The row of `id` once `holds` says yes; fails naming `what` after `ms`. */
const until = (id: string, what: string, holds: (row: Row) => boolean, ms = 15_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    while (true) {
      const row = yield* rowOf(id)
      if (holds(row)) return row
      if (Date.now() > deadline)
        return yield* Effect.die(new Error(`request ${id} never ${what}: ${JSON.stringify(row)}`))
      yield* Effect.sleep(25)
    }
  })

/** Idle claims for `workers`, asked on one turn as a notification asks them; their outcomes, in order. */
const claimIdle = (workers: ReadonlyArray<string>, leaseMs: number) =>
  Effect.flatMap(Queue, (queue) =>
    Effect.forEach(
      workers.map((workerId) =>
        Effect.async<IdleClaimOutcome>((resume) => {
          queue.claimIdle(workerId, leaseMs, (outcome) => resume(Effect.succeed(outcome)))
        })
      ),
      (answer) => answer,
      { concurrency: "unbounded" }
    )
  )

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("idle claims", (it) => {
  it.effect("fibers idle on one turn claim in one statement, each a request of its own or none", () =>
    Effect.gen(function* () {
      yield* truncate
      const queue = yield* Queue
      const ids = [yield* insert("a"), yield* insert("b")]
      const outcomes = yield* claimIdle(["w/1", "w/2", "w/3"], 60_000)
      expect([...outcomes].sort()).toEqual(["claimed", "claimed", "none"])

      const rows = yield* Effect.forEach(ids, rowOf)
      expect(rows.map((r) => r.status)).toEqual(["processing", "processing"])
      // One statement, one transaction: one now().
      expect(new Set(rows.map((r) => r.claimed_at!.getTime())).size).toBe(1)
      // Each claimed fiber's claim takes its own, with no statement of its own.
      for (const [i, outcome] of outcomes.entries()) {
        if (outcome !== "claimed") continue
        const workerId = `w/${i + 1}`
        const taken = Option.getOrThrow(yield* queue.claim(workerId, 60_000))
        expect(rows.find((r) => r.claimed_by === workerId)).toBeDefined()
        expect(ids).toContain(taken.request.id)
        expect((yield* rowOf(taken.request.id)).claimed_at!.getTime()).toBe(rows[0]!.claimed_at!.getTime())
      }
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("a fiber that holds a request already is told so without a statement", () =>
    Effect.gen(function* () {
      yield* truncate
      const queue = yield* Queue
      const first = yield* insert("first")
      expect(yield* claimIdle(["w/1"], 60_000)).toEqual(["claimed"])
      const second = yield* insert("second")
      // Not taken yet: the fiber wakes to what it holds, and nothing more is claimed for it.
      expect(yield* claimIdle(["w/1"], 60_000)).toEqual(["claimed"])
      expect((yield* rowOf(second)).status).toBe("pending")
      expect(Option.map(yield* queue.claim("w/1", 60_000), (c) => c.request.id)).toEqual(Option.some(first))
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("what an idle claim took and its fiber never came for goes back by itself", () =>
    Effect.gen(function* () {
      yield* truncate
      const id = yield* insert("left")
      // A lease of 1 s: a tenth of it is fresh.
      expect(yield* claimIdle(["w/1"], 1_000)).toEqual(["claimed"])
      expect((yield* rowOf(id)).status).toBe("processing")
      yield* until(id, "went back to pending", (r) => r.status === "pending", 2_000)
      expect(yield* rowOf(id)).toMatchObject({ claimed_by: null, attempts: 0 })
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("a statement that fails says so, and claims nothing", () =>
    Effect.gen(function* () {
      yield* truncate
      const id = yield* insert("untouched")
      // No lease the server can make an interval of.
      expect(yield* claimIdle(["w/1", "w/2"], Number.NaN)).toEqual(["failed", "failed"])
      expect((yield* rowOf(id)).status).toBe("pending")
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("an idle worker wakes to a request claimed for it, and a fiber that got none waits for the next", () =>
    Effect.gen(function* () {
      yield* truncate
      const { file } = writePipeline({
        stages: "\n  - claim\n  - prepare-workspace\n  - execute-mclaude\n  - record\n"
      })
      // Polls too rare to matter: only notifications bring the requests.
      const worker = yield* Effect.fork(runWorker(file, { workerCount: 2, pollIntervalMs: 600_000 }, { once: false }))
      // Both fibers have looked once and wait.
      yield* Effect.sleep(1_000)
      const slow = yield* insert("@sleep 3000")
      const running = yield* until(slow, "was claimed", (r) => r.status === "processing")
      const quick = yield* insert("quick")
      const done = yield* until(quick, "completed", (r) => r.status === "completed")
      // Taken by the other fiber while the first still ran: it had got none the first time, and waited on.
      expect(done.claimed_by).not.toBe(running.claimed_by)
      expect((yield* rowOf(slow)).status).toBe("processing")
      yield* until(slow, "completed", (r) => r.status === "completed")
      yield* Fiber.interrupt(worker)
    })
  )
})
