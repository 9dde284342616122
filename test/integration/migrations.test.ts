import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { DatabaseUrl } from "../../src/db/Database.js"
import { loadMigrations, migrate } from "../../src/db/Migrator.js"
import { EmptyDatabaseUrl } from "../support/TestDatabase.js"

/** A client of its own, as a separate worker process would have. */
const ownClient = Layer.unwrapEffect(Effect.map(DatabaseUrl, (url) => PgClient.layer({ url, maxConnections: 2 })))

layer(EmptyDatabaseUrl, { excludeTestServices: true, timeout: "60 seconds" })("migrations", (it) => {
  it.effect("apply once when several workers start at the same moment, and are idempotent after", () =>
    Effect.gen(function* () {
      const url = yield* DatabaseUrl
      const runs = yield* Effect.all(
        Array.from({ length: 6 }, () =>
          migrate().pipe(
            Effect.provide(Layer.mergeAll(ownClient, NodeContext.layer)),
            Effect.provideService(DatabaseUrl, url)
          )
        ),
        { concurrency: "unbounded" }
      )
      // Exactly one of them applied the migrations; the others found them done.
      const bundled = (yield* loadMigrations().pipe(Effect.provide(NodeContext.layer))).length
      expect(bundled).toBeGreaterThanOrEqual(2)
      expect(runs.map((applied) => applied.length).sort()).toEqual([0, 0, 0, 0, 0, bundled])
      const again = yield* migrate().pipe(Effect.provide(Layer.mergeAll(ownClient, NodeContext.layer)))
      expect(again).toEqual([])
      const sql = yield* SqlClient.SqlClient
      const applied = yield* sql<{ id: number; name: string }>`SELECT id, name FROM stageline_migrations`
      expect(applied.slice(0, 2)).toEqual([
        { id: 1, name: "queue" },
        { id: 2, name: "leases_retries_cancellation" }
      ])
      expect(applied).toHaveLength(bundled)
    }).pipe(Effect.provide(ownClient))
  )
})
