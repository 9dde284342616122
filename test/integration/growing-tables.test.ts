/**
 * A worker's connections live long, and PostgreSQL keeps the plan of a prepared statement (or of a
 * statement inside a PL/pgSQL function) for the life of the connection once it finds that plan cheap. A
 * plan made while the queue's tables were small, in a new database, reads them whole, and went on doing so
 * once they were large: 65 ms for a group's record and 135 ms for a heartbeat with a million requests,
 * until an ANALYZE happened to come. The statements a worker repeats must read by key however the tables
 * grew after it started, and a plan kept for a long queue must still read only its head.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import pg from "pg"
import { DatabaseUrl } from "../../src/db/Database.js"
import { PgPool } from "../../src/db/Prepared.js"
import { Queue } from "../../src/queue/Queue.js"
import { explainInto, ownConnection } from "../support/autoExplain.js"
import { TestDatabase } from "../support/TestDatabase.js"

/**
 * The queue's own statements on one connection of a pool of one, explained: each call meets the plans the
 * last one left on it.
 */
const onOneConnection =
  (url: string, notices: Array<string>) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.suspend(() => {
      const pool = new pg.Pool({ connectionString: url, max: 1 })
      pool.on("connect", (client) => {
        explainInto(client, notices).catch(() => {})
      })
      return effect.pipe(
        Effect.provide(Queue.layer.pipe(Layer.provide(Layer.succeed(PgPool, pool)))),
        Effect.ensuring(Effect.promise(() => pool.end()))
      )
    })

const empty = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`
)

/** Requests held by w/1 … w/n in a queue of a few rows. */
const held = (n: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, status, attempts, claimed_by)
      SELECT 'held ' || i, 'processing', 1, 'w/' || i FROM generate_series(1, ${n}) AS i RETURNING id`.pipe(
      Effect.map((rows) => rows.map((row, i) => ({ id: row.id, workerId: `w/${i + 1}` })))
    )
  )

/** The queue grows by 100,000 finished requests, with no ANALYZE after it. */
const grow = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`INSERT INTO orchestration_requests (prompt, status, attempts, finished_at)
    SELECT 'done', 'completed', 1, now() FROM generate_series(1, 100000)`
)

const scansOfRequests = (plans: ReadonlyArray<string>) =>
  plans.filter((plan) => plan.includes("Seq Scan on orchestration_requests"))

layer(TestDatabase, { excludeTestServices: true, timeout: "120 seconds" })("plans as the tables grow", (it) => {
  it.effect("a group's record reads its requests by key after the queue grew", () =>
    Effect.gen(function* () {
      yield* empty
      const requests = yield* held(2)
      // Attempts of requests these workers do not hold: the statements run, and nothing is written.
      const attempts = JSON.stringify(
        requests.map((r) => ({ request_id: r.id, worker_id: "w/somebody-else", attempt: 1, status: "success" }))
      )
      const notices: Array<string> = []
      const rows = yield* ownConnection((client) =>
        Effect.gen(function* () {
          const record = Effect.promise(() => client.query("SELECT * FROM record_attempts($1::jsonb)", [attempts]))
          // Often enough, while the queue is small, for PostgreSQL to settle on a plan it keeps.
          for (let i = 0; i < 8; i++) yield* record
          yield* grow
          yield* Effect.promise(() => explainInto(client, notices))
          return (yield* record).rows
        })
      )
      expect(rows).toEqual([
        { status: null, existing: false },
        { status: null, existing: false }
      ])
      const plan = notices.find((n) => n.includes("FOR NO KEY UPDATE OF q"))
      expect(plan).toContain("orchestration_requests_pkey")
      expect(scansOfRequests(notices)).toEqual([])
    })
  )

  it.effect("events are written with their requests read by key after the queue grew", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* empty
      const requests = yield* held(2)
      const events = JSON.stringify(
        requests.map((r) => ({ request_id: r.id, attempt: 1, at: new Date().toISOString(), kind: "stage-started" }))
      )
      const notices: Array<string> = []
      yield* ownConnection((client) =>
        Effect.gen(function* () {
          const insert = Effect.promise(() => client.query("SELECT insert_events($1::jsonb)", [events]))
          for (let i = 0; i < 8; i++) yield* insert
          yield* grow
          yield* Effect.promise(() => explainInto(client, notices))
          yield* insert
        })
      )
      const [written] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM orchestration_events`
      expect(written!.n).toBe(18)
      const plan = notices.find((n) => n.includes("FOR KEY SHARE OF q"))
      expect(plan).toContain("orchestration_requests_pkey")
      expect(scansOfRequests(notices)).toEqual([])
    })
  )

  it.effect("a heartbeat reads the leases it renews by key after the queue grew", () =>
    Effect.gen(function* () {
      const url = yield* DatabaseUrl
      yield* empty
      const requests = yield* held(2)
      const leases = requests.map((r) => ({ requestId: r.id, workerId: r.workerId, stage: "noop" }))
      const notices: Array<string> = []
      const states = yield* Effect.gen(function* () {
        const queue = yield* Queue
        for (let i = 0; i < 8; i++) yield* queue.heartbeat(leases, 60_000)
        yield* grow
        notices.length = 0
        return yield* queue.heartbeat(leases, 60_000)
      }).pipe(onOneConnection(Redacted.value(url), notices))
      expect([...states.values()]).toEqual(["held", "held"])
      expect(notices.some((n) => n.includes("WITH held AS"))).toBe(true)
      expect(scansOfRequests(notices)).toEqual([])
    })
  )
  it.effect("a claim takes the head of the claim index, and its rows by key, with a long queue", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const url = yield* DatabaseUrl
      yield* empty
      yield* grow
      yield* sql`INSERT INTO orchestration_requests (prompt) SELECT 'pending ' || i FROM generate_series(1, 100000) AS i`
      // Analyzed, as a long-lived queue is: the planner knows how long it is.
      yield* sql`ANALYZE orchestration_requests`
      const notices: Array<string> = []
      const claimed = yield* Effect.gen(function* () {
        const queue = yield* Queue
        // Enough claims for PostgreSQL to settle on the plan it keeps, and a group of four to end with.
        for (let i = 0; i < 8; i++) yield* queue.claim(`w/${i}`, 60_000)
        notices.length = 0
        return yield* Effect.forEach(["a", "b", "c", "d"], (w) => queue.claim(`w/${w}`, 60_000), {
          concurrency: "unbounded"
        })
      }).pipe(onOneConnection(Redacted.value(url), notices))
      expect(claimed.map((c) => Option.map(c, (claim) => claim.request.claimed_by))).toEqual(
        ["w/a", "w/b", "w/c", "w/d"].map(Option.some)
      )
      const plans = notices.filter((n) => n.includes("orchestration_requests"))
      expect(plans.some((plan) => plan.includes("orchestration_requests_claim_idx"))).toBe(true)
      expect(scansOfRequests(notices)).toEqual([])
    })
  )
})
