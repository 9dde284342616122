/**
 * stageline's statements alone, as a reference beside the queues: the claim and the record a request
 * costs, sent by a bare loop through `pg` with no runner around them (no fibers, stages, events, metrics
 * or leases). As the worker does, the loop claims once, then records each attempt and claims the next in
 * one statement (Queue's recordAndClaimStatement). At concurrency c it claims for c workers at once and
 * records their c attempts at once, as stageline's worker groups them when its c fibers move in step; from
 * 16 on, in two loops of half the workers each, as the worker's fibers record in two groups
 * (Queue's recordGroupsFor), each with its statement in flight. So its jobs/s is the rate those statements
 * reach, sent that way, with no runner's cost between them.
 *
 * It sends one request's record per worker in each statement, as the worker did before it held several
 * requests claimed ahead. A worker whose runs are quicker than that statement now records several, and
 * claims as many, in one statement (Queue's depthAhead), so where the database bounded this loop (at
 * concurrency 1) stageline goes past it: the figure is the database's rate for requests sent one at a time.
 */
import pg from "pg"
import { claimStatement, recordAndClaimStatement, recordGroupsFor } from "../../src/queue/Queue.js"
import { connect, createDatabase, dropDatabase } from "./databases.js"
import { startStageline } from "./stageline.js"
import { noopPipeline, type QueueSystem } from "./systems.js"
import { stagelineTables } from "./tables.js"

/** A request a claim returned, as far as a record needs it. */
export interface Claimed {
  readonly id: string
  readonly attempts: number
  readonly claimed_by: string
}

/** One attempt as record_attempts reads it: a success with stageline's result-row fields. */
export const attemptOf = (request: Claimed) => ({
  request_id: request.id,
  attempt: request.attempts,
  worker_id: request.claimed_by,
  status: "success",
  final: "completed",
  may_retry: false,
  max_attempts: 3,
  backoff_ms: 1000,
  output: { extra: { noop: { started_at_ms: Date.now() } } },
  pr_url: null,
  commit_sha: null,
  branch_name: null,
  duration_ms: 0,
  error: null,
  session_id: null,
  model: null,
  num_turns: null,
  cost_usd: null,
  usage: null
})

/** The worker ids the bare loops claim for: `bench-0` … `bench-(n-1)`. */
export const benchWorkers = (n: number) => Array.from({ length: n }, (_, i) => `bench-${i}`)

export const stagelineStatements = async (): Promise<QueueSystem> => {
  const db = await createDatabase("statements")
  const client = await connect(db.url)
  const tables = stagelineTables(client)
  // stageline's own migrations make the schema: a worker started and stopped at once.
  await (
    await startStageline({ url: db.url, database: db.name, pipeline: noopPipeline, workerCount: 1, observer: client })
  ).stop()
  return {
    name: "stageline statements alone",
    start: async (concurrency) => {
      const pool = new pg.Pool({ connectionString: db.url, max: 10, application_name: "stageline-bench" })
      const groups = recordGroupsFor(concurrency)
      const workersOf = (group: number) => benchWorkers(concurrency).filter((_, i) => i % groups === group)
      let running = true
      const send = async <Row>(statement: { name: string; text: string }, values: Array<unknown>) =>
        (await pool.query<Row & pg.QueryResultRow>({ ...statement, values })).rows
      const loop = async (workers: ReadonlyArray<string>) => {
        let claimed: ReadonlyArray<Claimed> = []
        while (running) {
          if (claimed.length === 0) claimed = await send<Claimed>(claimStatement, [workers, 60_000])
          if (claimed.length === 0) {
            await new Promise((resolve) => setTimeout(resolve, 1))
            continue
          }
          const rows = await send<Partial<Claimed>>(recordAndClaimStatement, [
            JSON.stringify(claimed.map(attemptOf)),
            claimed.map((c) => c.claimed_by),
            60_000
          ])
          claimed = rows.filter((row): row is Claimed => row.id !== null)
        }
      }
      const loops = Promise.all(Array.from({ length: groups }, (_, group) => loop(workersOf(group))))
      return {
        insertMany: tables.insertMany,
        insertOne: () => Promise.reject(new Error("the statements alone are not timed for pickup")),
        startedAt: () => Promise.reject(new Error("the statements alone are not timed for pickup")),
        completed: tables.completed,
        stop: async () => {
          running = false
          await loops
          await pool.end()
        }
      }
    },
    reset: tables.empty,
    close: async () => {
      await client.end()
      await dropDatabase(db.name)
    }
  }
}
