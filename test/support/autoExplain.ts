/**
 * Reading the plans PostgreSQL runs, statements inside functions included, through auto_explain: what the
 * planner chose for a connection is otherwise out of sight.
 */
import { Effect, Redacted } from "effect"
import pg from "pg"
import { DatabaseUrl } from "../../src/db/Database.js"

/**
 * From now on, the plan of every statement `client` runs, nested ones too, goes into `notices`:
 * auto_explain at NOTICE, analysed, so a node that never ran says "never executed".
 */
export const explainInto = async (client: pg.ClientBase, notices: Array<string>) => {
  client.on("notice", (notice) => notices.push(notice.message ?? ""))
  await client.query("LOAD 'auto_explain'")
  await client.query(`SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
    SET auto_explain.log_analyze = on; SET auto_explain.log_level = notice`)
}

/** A connection of its own to the test database, for as long as `use` runs. */
export const ownConnection = <A, E, R>(use: (client: pg.Client) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(DatabaseUrl, (url) =>
    Effect.acquireUseRelease(
      Effect.promise(async () => {
        const client = new pg.Client({ connectionString: Redacted.value(url) })
        await client.connect()
        return client
      }),
      use,
      (client) => Effect.promise(() => client.end())
    )
  )
