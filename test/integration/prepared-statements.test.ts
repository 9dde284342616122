/**
 * The hot statements go past the SQL client, through the pool (src/db/Prepared.ts): a caller that stops
 * waiting (a heartbeat's timeout) must not leave its statement running on the server, holding a
 * connection and whatever locks it took.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { PgPool, prepare } from "../../src/db/Prepared.js"
import { TestDatabase } from "../support/TestDatabase.js"

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("prepared statements", (it) => {
  it.effect("answer with their rows, and are cancelled on the server when their caller is interrupted", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const pool = yield* PgPool
      const add = prepare<{ sum: number }>(pool, "test_add", "SELECT ($1::int + $2::int) AS sum")
      expect(yield* add([2, 3])).toEqual([{ sum: 5 }])
      expect(yield* add([4, 5])).toEqual([{ sum: 9 }])

      const nap = prepare(pool, "test_nap", "SELECT pg_sleep($1::float8) AS slept")
      const running = () =>
        sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE state = 'active' AND query = 'SELECT pg_sleep($1::float8) AS slept'`.pipe(
          Effect.map((rows) => rows[0]!.n)
        )
      const fiber = yield* Effect.fork(nap([60]))
      while ((yield* running()) === 0) yield* Effect.sleep(20)
      yield* Fiber.interrupt(fiber)
      // Cancelled, it ends within moments, not in a minute.
      let polls = 0
      while ((yield* running()) > 0 && polls < 100) {
        polls++
        yield* Effect.sleep(50)
      }
      expect(yield* running()).toBe(0)
      // And the pool goes on serving.
      expect(yield* add([1, 1])).toEqual([{ sum: 2 }])
    })
  )
})
