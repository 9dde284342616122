/**
 * The worker's hot statements (claim, record, events) as named prepared statements, sent
 * straight through the `pg` pool that the SQL client also uses. Each connection parses and plans such a
 * statement once, then only binds and runs it; and a call costs a callback, not @effect/sql's statement
 * compilation, connection fiber and query span, which for a claim or a record cost more of the worker's
 * CPU than the round trip did. The heartbeat goes the same way but is planned at every call (`planned`).
 * Everything else goes through the SQL client as before.
 */
import * as SqlError from "@effect/sql/SqlError"
import { Context, Effect, Either } from "effect"
import type pg from "pg"

/** The pool behind the SQL client, for statements sent past it. */
export class PgPool extends Context.Tag("stageline/PgPool")<PgPool, pg.Pool>() {}

/** A statement prepared once per connection, under `name`; parameters `$1…` are the values given. */
export type PreparedStatement<Row> = (
  values: ReadonlyArray<unknown>
) => Effect.Effect<ReadonlyArray<Row>, SqlError.SqlError>

/**
 * Binds `text` to `name` on `pool`. The name must be unique to the text: a connection that has a
 * statement of that name runs it without reading `text` again.
 *
 * A caller interrupted while the statement runs (a heartbeat's timeout) asks the server to cancel it, as
 * @effect/sql-pg does, so that the connection is not held by a statement nobody waits for.
 */
export const prepare = <Row>(pool: pg.Pool, name: string, text: string): PreparedStatement<Row> =>
  send(pool, { name, text }, name)

/**
 * `text` sent the same way, but planned at every call, for the values of that call: for a statement that
 * reads tables (a prepared statement's plan, once kept, is never made again however the tables grow) and
 * runs too seldom for its planning to matter.
 */
export const planned = <Row>(pool: pg.Pool, label: string, text: string): PreparedStatement<Row> =>
  send(pool, { text }, label)

/**
 * `text` prepared under `name` as `prepare` does, sent at once from the caller's stack and answered through
 * `done`: for a caller that is a plain callback (a notification's) and would otherwise start a fiber only to
 * send it. Returns how to stop waiting, which asks the server to cancel the statement.
 */
export const prepareCallback =
  <Row>(pool: pg.Pool, name: string, text: string) =>
  (values: ReadonlyArray<unknown>, done: (answer: Either.Either<ReadonlyArray<Row>, SqlError.SqlError>) => void) =>
    query(pool, { name, text }, name, values, done)

const send =
  <Row>(
    pool: pg.Pool,
    statement: { readonly name?: string; readonly text: string },
    label: string
  ): PreparedStatement<Row> =>
  (values) =>
    Effect.async<ReadonlyArray<Row>, SqlError.SqlError>((resume) => {
      const stop = query<Row>(pool, statement, label, values, (answer) =>
        resume(Either.isRight(answer) ? Effect.succeed(answer.right) : Effect.fail(answer.left))
      )
      return Effect.sync(stop)
    })

/** Sends the statement and calls `done` with its answer, unless stopped first. */
const query = <Row>(
  pool: pg.Pool,
  statement: { readonly name?: string; readonly text: string },
  label: string,
  values: ReadonlyArray<unknown>,
  done: (answer: Either.Either<ReadonlyArray<Row>, SqlError.SqlError>) => void
): (() => void) => {
  let client: pg.PoolClient | undefined
  let settled = false
  pool.connect((error, connected, release) => {
    if (error || connected === undefined) {
      if (!settled) {
        settled = true
        done(Either.left(new SqlError.SqlError({ cause: error, message: "Failed to acquire connection" })))
      }
      return
    }
    if (settled) {
      release()
      return
    }
    client = connected
    connected.query({ ...statement, values: values as Array<unknown> }, (error: Error | undefined, result) => {
      client = undefined
      // As pool.query does, a connection whose statement failed is not handed out again; nor one whose
      // statement was cancelled, since the cancel may still be on its way and would hit the next one.
      release(error ?? (settled ? new Error("the statement's caller was interrupted") : undefined))
      if (settled) return
      settled = true
      done(
        error
          ? Either.left(new SqlError.SqlError({ cause: error, message: `Failed to execute ${label}` }))
          : Either.right(result.rows as ReadonlyArray<Row>)
      )
    })
  })
  return () => {
    settled = true
    // The server's id for the connection, which pg keeps but does not declare.
    const backend = (client as { processID?: number } | undefined)?.processID
    if (backend !== undefined) pool.query("SELECT pg_cancel_backend($1)", [backend]).catch(() => {})
  }
}
