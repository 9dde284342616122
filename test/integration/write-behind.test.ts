/**
 * A run that ends with record hands its result to the Recorder and goes on (Recorder.writeBehind): the row
 * must still land, its request stay held and its lease renewed until then, and the worker must not close
 * before every such row has landed. A transaction that holds the result table locked keeps the writes from
 * landing for as long as a test needs.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option, Redacted } from "effect"
import pg from "pg"
import { WorkerConfig } from "../../src/config/WorkerConfig.js"
import { DatabaseUrl } from "../../src/db/Database.js"
import type { StageFailure } from "../../src/pipeline/RunContext.js"
import { Leases } from "../../src/queue/Lease.js"
import { Queue } from "../../src/queue/Queue.js"
import { Recorder } from "../../src/queue/Recorder.js"
import { Wakeups } from "../../src/queue/Wakeups.js"
import { successOf } from "../support/resultRows.js"
import { TestDatabase } from "../support/TestDatabase.js"

const noRetry = { retryable: false, maxAttempts: 1, backoffMs: 0 }

/**
 * The worker's queue, leases and recorder, as Worker.stageServices builds them, with a lease of `leaseMs`;
 * and tracing off, as a worker has it with no trace exporter (a traced write goes through a fiber).
 */
const services = (leaseMs: number) =>
  Recorder.layer.pipe(
    Layer.provideMerge(Leases.layer),
    Layer.provideMerge(Layer.merge(Queue.layer, Wakeups.layer)),
    Layer.provide(WorkerConfig.layer({ leaseMs })),
    Layer.merge(Layer.setTracerEnabled(false))
  )

/** An operator's transaction holding `orchestration_results` so that no insert lands, until `unlock`. */
const lockResults = Effect.acquireRelease(
  Effect.gen(function* () {
    const client = new pg.Client({ connectionString: Redacted.value(yield* DatabaseUrl) })
    yield* Effect.promise(async () => {
      await client.connect()
      await client.query("BEGIN")
      await client.query("LOCK TABLE orchestration_results IN SHARE MODE")
    })
    let open = true
    return {
      unlock: Effect.promise(async () => {
        if (!open) return
        open = false
        await client.query("COMMIT")
        await client.end()
      })
    }
  }),
  (lock) => lock.unlock
)

/** Runs of one request each, as the runner keeps them: claimed, kept, and recorded behind the run. */
const runEndingWithRecord = (workerId: string, leaseMs: number) =>
  Effect.gen(function* () {
    const queue = yield* Queue
    const leases = yield* Leases
    const recorder = yield* Recorder
    const claim = Option.getOrThrow(yield* queue.claim(workerId, leaseMs))
    yield* Effect.scoped(
      Effect.gen(function* () {
        const run = {
          workerId,
          pipeline: "test",
          startedAt: Date.now(),
          stages: [],
          abort: yield* Deferred.make<StageFailure>(),
          currentStage: "record",
          claimFollows: true
        }
        yield* leases.keep(claim, run)
        yield* recorder.writeBehind({ result: successOf(claim.request.id, workerId), retry: noRetry })
      })
    )
    return claim.request.id
  })

const rowsOf = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ status: string; leased: boolean; results: number }>`SELECT status,
        coalesce(lease_expires_at > now(), false) AS leased,
        (SELECT count(*)::int FROM orchestration_results AS r WHERE r.request_id = q.id) AS results
      FROM orchestration_requests AS q WHERE id IN ${sql.in(ids)} ORDER BY priority DESC`
  )

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("writing results behind the run", (it) => {
  it.effect("a result written behind its run lands later, its request held and its lease renewed until then", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const leaseMs = 900
      yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
      yield* sql`INSERT INTO orchestration_requests (prompt, priority) VALUES ('a', 2), ('b', 1)`
      const lock = yield* lockResults
      // a's statement goes out at once and waits on the lock; b's waits behind it, its row not locked.
      const ids = [yield* runEndingWithRecord("w/1", leaseMs), yield* runEndingWithRecord("w/2", leaseMs)]
      expect((yield* rowsOf(ids)).map((r) => [r.status, r.results])).toEqual([
        ["processing", 0],
        ["processing", 0]
      ])
      // Past b's first lease: had its run's end let go of it, nobody would have renewed it.
      yield* Effect.sleep(leaseMs * 2)
      expect((yield* rowsOf(ids))[1]).toEqual({ status: "processing", leased: true, results: 0 })

      yield* lock.unlock
      let rows = yield* rowsOf(ids)
      for (let i = 0; i < 100 && rows.some((r) => r.status !== "completed"); i++) {
        yield* Effect.sleep(50)
        rows = yield* rowsOf(ids)
      }
      expect(rows).toEqual([
        { status: "completed", leased: false, results: 1 },
        { status: "completed", leased: false, results: 1 }
      ])
    }).pipe(Effect.provide(services(900)), Effect.scoped)
  )

  it.effect("the worker's services close only once the results written behind the runs have landed", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
      yield* sql`INSERT INTO orchestration_requests (prompt, priority) VALUES ('a', 2), ('b', 1)`
      const lock = yield* lockResults
      // a's statement is sent and waits on the lock; b's record is still queued behind it when the runs end.
      const worker = yield* Effect.fork(
        Effect.all([runEndingWithRecord("w/1", 60_000), runEndingWithRecord("w/2", 60_000)]).pipe(
          Effect.provide(services(60_000))
        )
      )
      yield* Effect.sleep(500)
      // The runs ended long ago; what is still going on is the close, waiting for the rows.
      expect(worker.unsafePoll()).toBeNull()
      expect((yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM orchestration_results`)[0]!.n).toBe(0)
      yield* lock.unlock
      const ids = yield* Fiber.join(worker)
      expect(yield* rowsOf(ids)).toEqual([
        { status: "completed", leased: false, results: 1 },
        { status: "completed", leased: false, results: 1 }
      ])
    }).pipe(Effect.scoped)
  )

  it.effect("a write whose first try fails is tried again, its request held, and the close waits for it", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
      yield* sql`INSERT INTO orchestration_requests (prompt) VALUES ('a')`
      const lock = yield* lockResults
      const worker = yield* Effect.fork(runEndingWithRecord("w/1", 60_000).pipe(Effect.provide(services(60_000))))
      // The record's first try waits on the lock; its connection is ended under it, so the try fails.
      let ended = false
      for (let i = 0; i < 200 && !ended; i++) {
        const [row] = yield* sql<{ ended: boolean }>`SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
          WHERE query LIKE '%record_attempts%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`
        ended = row?.ended === true
        if (!ended) yield* Effect.sleep(25)
      }
      expect(ended).toBe(true)
      // Tried again after 200 ms, and waiting on the lock again; meanwhile the request is still held.
      yield* Effect.sleep(500)
      expect(worker.unsafePoll()).toBeNull()
      const [held] = yield* sql<{
        status: string
        claimed_by: string
      }>`SELECT status, claimed_by FROM orchestration_requests`
      expect(held).toEqual({ status: "processing", claimed_by: "w/1" })
      yield* lock.unlock
      const id = yield* Fiber.join(worker)
      expect(yield* rowsOf([id])).toEqual([{ status: "completed", leased: false, results: 1 }])
    }).pipe(Effect.scoped)
  )
})
