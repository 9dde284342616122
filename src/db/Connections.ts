/**
 * Connections that give up on a database that stopped answering. A server that restarts closes its
 * connections, which `pg` notices; a connection that silently stops carrying bytes (a NAT entry gone, a
 * proxy or a network that drops packets without a reset) is never noticed by TCP alone, and every query on
 * it waits forever. So each connection has a deadline to connect and a deadline for each query's answer,
 * and a connection whose query missed its deadline is closed, not handed back to the pool, where the next
 * query would queue behind the lost one.
 */
import { Config, Duration } from "effect"
import pg from "pg"

export const connectionConfig = Config.all({
  /** How long opening a connection may take (`STAGELINE_DB_CONNECT_TIMEOUT_MS`, default 10 s). */
  connectTimeoutMs: Config.integer("STAGELINE_DB_CONNECT_TIMEOUT_MS").pipe(
    Config.validate({ message: "STAGELINE_DB_CONNECT_TIMEOUT_MS must be at least 100", validation: (n) => n >= 100 }),
    Config.withDefault(10_000)
  ),
  /** How long a query's answer may take (`STAGELINE_DB_QUERY_TIMEOUT_MS`, default 30 s). */
  queryTimeoutMs: Config.integer("STAGELINE_DB_QUERY_TIMEOUT_MS").pipe(
    Config.validate({ message: "STAGELINE_DB_QUERY_TIMEOUT_MS must be at least 100", validation: (n) => n >= 100 }),
    Config.withDefault(30_000)
  )
})
export type ConnectionSettings = Config.Config.Success<typeof connectionConfig>

const timedOut = (error: unknown) => error instanceof Error && error.message === "Query read timeout"

/**
 * A `pg.Client` that closes itself when a query's answer does not come within `query_timeout`. `end()`
 * marks it ending at once (so the pool drops it on release) and destroys the socket a lost query holds.
 */
export class DeadlineClient extends pg.Client {
  // biome-ignore lint/suspicious/noExplicitAny: pg.Client.query has a dozen overloads; each is wrapped alike.
  override query(...args: Array<any>): any {
    const last = args.length - 1
    if (typeof args[last] === "function") {
      const callback = args[last] as (error: unknown, result: unknown) => void
      args[last] = (error: unknown, result: unknown) => {
        if (timedOut(error)) this.end().catch(() => {})
        callback(error, result)
      }
      return (super.query as (...a: Array<unknown>) => unknown)(...args)
    }
    const result = (super.query as (...a: Array<unknown>) => unknown)(...args)
    if (result instanceof Promise) {
      return result.catch((error: unknown) => {
        if (timedOut(error)) this.end().catch(() => {})
        throw error
      })
    }
    return result
  }
}

/** Options for a `pg.Client` or `pg.Pool` with the deadlines above. */
export const deadlines = (settings: ConnectionSettings) => ({
  connectionTimeoutMillis: settings.connectTimeoutMs,
  query_timeout: settings.queryTimeoutMs,
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000
})

/** A pool of DeadlineClients. Errors of idle connections (a server restart) only drop those connections. */
export const makePool = (url: string, applicationName: string, max: number, settings: ConnectionSettings) => {
  const pool = new pg.Pool({
    connectionString: url,
    application_name: applicationName,
    max,
    idleTimeoutMillis: Duration.toMillis(Duration.seconds(30)),
    Client: DeadlineClient,
    ...deadlines(settings)
  })
  // Without a listener an idle connection's error would end the process; pg-pool has already dropped it.
  pool.on("error", () => {})
  return pool
}
