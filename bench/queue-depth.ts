/**
 * Queue depth: how long one claim takes with 0, 100k and 1M other requests pending, through the Queue
 * service the claim stage uses; and the plan PostgreSQL picks for the claim at each depth, which must
 * read the head of the partial claim index, not the table.
 */
import { NodeContext } from "@effect/platform-node"
import { ConfigProvider, Layer, ManagedRuntime } from "effect"
import * as Database from "../src/db/Database.js"
import { migrate } from "../src/db/Migrator.js"
import { Queue } from "../src/queue/Queue.js"
import { connect, createDatabase, dropDatabase } from "./support/databases.js"
import { load } from "./support/machine.js"
import { now, percentile, round } from "./support/stats.js"

/** The claim function's statement, as EXPLAIN can see it (a SQL function's plan is not shown). */
const claimStatement = `UPDATE orchestration_requests AS r
   SET status = 'processing', claimed_at = now(), claimed_by = 'explain', attempts = r.attempts + 1,
       lease_expires_at = now() + interval '60 seconds', heartbeat_at = now(), current_stage = NULL
 WHERE r.id = (SELECT p.id FROM orchestration_requests AS p
                WHERE p.status = 'pending' AND p.run_after <= now()
                ORDER BY p.priority DESC, p.run_after, p.created_at
                LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING r.*`

export const measureDepth = async (options: { readonly depths: ReadonlyArray<number>; readonly claims: number }) => {
  const db = await createDatabase("depth")
  const client = await connect(db.url)
  const runtime = ManagedRuntime.make(
    Layer.mergeAll(Queue.layer, NodeContext.layer).pipe(
      Layer.provideMerge(Database.layer),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["DATABASE_URL", db.url]]))))
    )
  )
  try {
    await runtime.runPromise(migrate())
    const queue = await runtime.runPromise(Queue)
    const results = []
    let pending = 0
    for (const depth of [...options.depths].sort((a, b) => a - b)) {
      // The backlog is older than anything claimed below, so each claim takes from it and it stays at `depth`.
      if (depth > pending) {
        await client.query(
          `INSERT INTO orchestration_requests (prompt, created_at, run_after)
           SELECT 'backlog', now() - interval '1 day' + g * interval '1 microsecond', now() - interval '1 day'
             FROM generate_series(1, $1) g`,
          [depth - pending]
        )
        pending = depth
      }
      await client.query("VACUUM ANALYZE orchestration_requests")
      const times: Array<number> = []
      for (let i = 0; i < options.claims; i++) {
        await client.query(`INSERT INTO orchestration_requests (prompt) VALUES ('top-up')`)
        const started = now()
        const claimed = await runtime.runPromise(queue.claim("bench-depth", 60_000))
        times.push(now() - started)
        if (claimed._tag === "None") throw new Error("the claim found nothing to claim")
      }
      // What was claimed is finished, as record would leave it; the backlog stays pending.
      await client.query(`UPDATE orchestration_requests SET status = 'completed', finished_at = now()
                           WHERE status = 'processing'`)
      await client.query("BEGIN")
      const plan = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN (ANALYZE, BUFFERS) ${claimStatement}`)
      await client.query("ROLLBACK")
      const planText = plan.rows.map((r) => r["QUERY PLAN"]).join("\n")
      const pendingNow = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM orchestration_requests WHERE status = 'pending'`
      )
      results.push({
        pending: pendingNow.rows[0]!.n,
        claims: options.claims,
        p50_ms: round(percentile(times, 50)),
        p95_ms: round(percentile(times, 95)),
        p99_ms: round(percentile(times, 99)),
        index_used: planText.includes("orchestration_requests_claim_idx"),
        plan: planText,
        load: load()
      })
      console.log(`  claim with ${depth} pending: p50 ${round(percentile(times, 50))} ms (load ${load()})`)
    }
    return results
  } finally {
    await runtime.dispose()
    await client.end()
    await dropDatabase(db.name)
  }
}
