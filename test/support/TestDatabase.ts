/**
 * A database of its own for each test file, migrated, and dropped when the file's layer is released.
 */
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, Redacted } from "effect"
import pg from "pg"
import { inject } from "vitest"
import { clientLayer, DatabaseUrl } from "../../src/db/Database.js"
import { migrate } from "../../src/db/Migrator.js"

const withDatabase = (url: string, database: string) => {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

const admin = async <A>(use: (client: pg.Client) => Promise<A>) => {
  const client = new pg.Client({ connectionString: inject("adminDatabaseUrl") })
  await client.connect()
  try {
    return await use(client)
  } finally {
    await client.end()
  }
}

/** Creates an empty database and returns its URL; dropped when the scope closes. */
export const freshDatabase = Effect.acquireRelease(
  Effect.promise(async () => {
    const name = `stageline_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`
    await admin((c) => c.query(`CREATE DATABASE ${name}`))
    return { name, url: withDatabase(inject("adminDatabaseUrl"), name) }
  }),
  ({ name }) => Effect.promise(() => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)))
)

/** The URL of a fresh database, not yet migrated. */
export const EmptyDatabaseUrl = Layer.scoped(
  DatabaseUrl,
  Effect.map(freshDatabase, ({ url }) => Redacted.make(url))
)

/** The worker's own SQL client (and the pool under it) on whatever database `DatabaseUrl` names. */
export const TestClient = clientLayer

/** SQL client + URL on a fresh, migrated database. */
export const TestDatabase = Layer.effectDiscard(migrate().pipe(Effect.provide(NodeContext.layer))).pipe(
  Layer.provideMerge(TestClient),
  Layer.provideMerge(EmptyDatabaseUrl)
)
