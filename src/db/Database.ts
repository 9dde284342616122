/**
 * The database connection: `DATABASE_URL` when it is set, otherwise the embedded PostgreSQL server, so that
 * a machine without a server still runs everything.
 */
import * as SqlError from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Config, Context, Duration, Effect, Layer, Option, Redacted, Schedule } from "effect"
import { describeError } from "../errors/Describe.js"
import { connectionConfig, makePool } from "./Connections.js"
import * as Embedded from "./EmbeddedPostgres.js"
import { PgPool } from "./Prepared.js"

/** Where the database is; the queue's listener opens its own connection from it. */
export class DatabaseUrl extends Context.Tag("stageline/DatabaseUrl")<DatabaseUrl, Redacted.Redacted<string>>() {}

export const databaseConfig = Config.all({
  url: Config.option(Config.redacted("DATABASE_URL")),
  embeddedPort: Config.port("STAGELINE_EMBEDDED_PG_PORT").pipe(Config.withDefault(54329)),
  embeddedDir: Config.string("STAGELINE_DATA_DIR").pipe(Config.withDefault(Embedded.defaultBaseDir())),
  // Queries are short (a claim, a record), so a small pool serves many worker fibers.
  poolSize: Config.integer("STAGELINE_DB_POOL_SIZE").pipe(Config.withDefault(10)),
  // In a container stack the worker often starts before its database accepts connections.
  waitMs: Config.integer("STAGELINE_DB_WAIT_MS").pipe(Config.withDefault(60_000))
})

/** Resolves the URL, starting the embedded server for the life of the layer when there is none. */
export const urlLayer = Layer.scoped(
  DatabaseUrl,
  Effect.gen(function* () {
    const config = yield* databaseConfig
    if (Option.isSome(config.url) && Redacted.value(config.url.value) !== "") return config.url.value
    const server = yield* Embedded.start({
      baseDir: config.embeddedDir,
      port: config.embeddedPort,
      database: "stageline"
    })
    yield* Effect.logInfo(
      `DATABASE_URL is not set: using the embedded PostgreSQL in ${server.dataDir} on 127.0.0.1:${server.port}`
    )
    return server.url
  })
)

/** Always the embedded server (the demo's), with a database of the given name on it. */
export const embeddedUrlLayer = (database: string) =>
  Layer.scoped(
    DatabaseUrl,
    Effect.gen(function* () {
      const config = yield* databaseConfig
      const server = yield* Embedded.start({ baseDir: config.embeddedDir, port: config.embeddedPort, database })
      return server.url
    })
  )

/** The pool for the given URL: every connection with a deadline to connect and to answer (see Connections). */
export const poolLayer = Layer.scoped(
  PgPool,
  Effect.gen(function* () {
    const url = yield* DatabaseUrl
    const { poolSize } = yield* databaseConfig
    const settings = yield* connectionConfig
    return yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const pool = makePool(Redacted.value(url), "stageline", poolSize, settings)
          await pool.query("SELECT 1").catch(async (error) => {
            await pool.end().catch(() => {})
            throw error
          })
          return pool
        },
        catch: (cause) => new SqlError.SqlError({ cause, message: "PgClient: Failed to connect" })
      }),
      (pool) => Effect.promise(() => pool.end().catch(() => {})).pipe(Effect.timeoutOption(1000))
    )
  })
)

/**
 * The SQL client over that pool, and the pool itself for the prepared statements (see Prepared): no
 * name transforms, so JSON keys and columns arrive exactly as stored.
 */
export const clientLayer = Layer.unwrapEffect(
  Effect.map(PgPool, (pool) =>
    PgClient.layerFromPool({ acquire: Effect.succeed(pool), applicationName: "stageline", transformJson: false })
  )
).pipe(Layer.provideMerge(poolLayer))

/** The SQL client and the URL, from the environment. */
export const layer = clientLayer.pipe(Layer.provideMerge(urlLayer))

/**
 * The same, for a long-running worker: while the server refuses connections it tries again, backing off
 * to every 5 s, for up to STAGELINE_DB_WAIT_MS, saying each time what it is waiting for.
 */
export const waitingLayer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const { waitMs } = yield* databaseConfig
    const retries = Schedule.exponential("250 millis").pipe(
      Schedule.union(Schedule.spaced("5 seconds")),
      Schedule.upTo(Duration.millis(waitMs)),
      Schedule.tapInput((error: unknown) => Effect.logWarning(`waiting for the database: ${describeError(error)}`))
    )
    return clientLayer.pipe(Layer.retry(retries))
  })
).pipe(Layer.provideMerge(urlLayer))
