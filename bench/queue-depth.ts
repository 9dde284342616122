/**
 * Queue depth: how long one claim takes with 0, 100k and 1M other requests pending, through the Queue
 * service the claim stage uses; and the plans PostgreSQL keeps for the claim's statements at each depth,
 * which must read the head of the partial claim index, and the claimed rows by key, not the table.
 */
import { NodeContext } from "@effect/platform-node"
import { ConfigProvider, Layer, ManagedRuntime } from "effect"
import type pg from "pg"
import * as Database from "../src/db/Database.js"
import { migrate } from "../src/db/Migrator.js"
import { Queue } from "../src/queue/Queue.js"
import { connect, createDatabase, dropDatabase } from "./support/databases.js"
import { load } from "./support/machine.js"
import { now, percentile, round } from "./support/stats.js"

/**
 * The plans of the claim as the worker runs it: claim_next_requests called on a connection of its own, its
 * statements explained by auto_explain (at NOTICE, analysed), in a transaction rolled back. Called a few
 * times first, as a worker's connection calls it, so the plan shown is the one PostgreSQL keeps.
 */
const explainClaim = async (client: pg.Client) => {
  const notices: Array<string> = []
  const listener = (notice: { readonly message?: string | undefined }) => {
    notices.push(notice.message ?? "")
  }
  client.on("notice", listener)
  try {
    await client.query("BEGIN")
    for (let i = 0; i < 6; i++) {
      await client.query(`SELECT id FROM claim_next_requests(ARRAY['explain'], interval '60 seconds')`)
    }
    await client.query(`LOAD 'auto_explain'; SET LOCAL auto_explain.log_min_duration = 0;
      SET LOCAL auto_explain.log_nested_statements = on; SET LOCAL auto_explain.log_analyze = on;
      SET LOCAL auto_explain.log_buffers = on; SET LOCAL auto_explain.log_level = notice`)
    notices.length = 0
    await client.query(`SELECT id FROM claim_next_requests(ARRAY['explain'], interval '60 seconds')`)
    return notices.filter((n) => n.includes("orchestration_requests")).join("\n\n")
  } finally {
    await client.query("ROLLBACK")
    client.off("notice", listener)
  }
}

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
      const planText = await explainClaim(client)
      const pendingNow = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM orchestration_requests WHERE status = 'pending'`
      )
      results.push({
        pending: pendingNow.rows[0]!.n,
        claims: options.claims,
        p50_ms: round(percentile(times, 50)),
        p95_ms: round(percentile(times, 95)),
        p99_ms: round(percentile(times, 99)),
        // The head of the claim index, and no statement of the claim reading the table whole.
        index_used:
          planText.includes("orchestration_requests_claim_idx") &&
          !planText.includes("Seq Scan on orchestration_requests"),
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
