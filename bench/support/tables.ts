/** stageline's tables, as every benchmark that runs stageline fills, counts and empties them. */
import type pg from "pg"

/** Through `client`, on a database stageline has migrated. */
export const stagelineTables = (client: pg.Client) => ({
  /** `n` pending requests, in one transaction. */
  insertMany: async (n: number) => {
    await client.query(`INSERT INTO orchestration_requests (prompt) SELECT 'noop' FROM generate_series(1, $1)`, [n])
  },
  /** Requests whose result row is committed. */
  completed: async () => {
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM orchestration_results`)
    return rows[0]!.n
  },
  empty: async () => {
    await client.query(`TRUNCATE orchestration_events, orchestration_results, orchestration_requests CASCADE`)
  }
})
