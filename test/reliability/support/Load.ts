/**
 * Many requests through several worker processes with an agent that does nothing: every stage runs (a
 * workspace, the skill, a real child process for the agent, the git artifacts, the record), so what is
 * measured is the runner's own cost. The same scenario runs small in `npm test` and at 10,000 in the soak.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { expect } from "vitest"
import { runCli, waitFor } from "../../support/cli.js"
import { tempDir, writePipeline } from "../../support/harness.js"
import { audit, connect, report, startWorker, waitUntilSettled, workerEnv } from "./Fleet.js"

/** An agent that prints a successful result and exits: a shell, not node, so it costs a few milliseconds. */
export const noopAgent = () => {
  const file = path.join(tempDir("noop-agent"), "noop-agent.sh")
  fs.writeFileSync(
    file,
    `#!/bin/sh\necho '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"noop","num_turns":1,"total_cost_usd":0}'\n`,
    { mode: 0o755 }
  )
  return file
}

export const runLoad = async (options: {
  readonly databaseUrl: string
  readonly requests: number
  readonly processes: number
  readonly fibers: number
  readonly settleMs: number
  /** The most a worker's resident memory may grow from a quarter of the way to the end. */
  readonly maxGrowthMiB: number
}) => {
  const env = workerEnv(options.databaseUrl, { WORKER_COUNT: String(options.fibers) })
  expect((await runCli(["migrate"], env)).code).toBe(0)
  const db = connect(options.databaseUrl)
  const pipeline = writePipeline({ command: noopAgent() })
  const workers = Array.from({ length: options.processes }, (_, i) => startWorker(pipeline.file, `load-${i + 1}`, env))
  // Started and idle: the resident memory to compare the end with.
  await new Promise((r) => setTimeout(r, 500))
  await waitFor("the workers to start", async () => workers.every((w) => w.rssKiB() !== null), 30_000)
  await new Promise((r) => setTimeout(r, 3_000))
  const rssStart = workers.map((w) => w.rssKiB()!)
  const started = Date.now()
  await db.query(
    `INSERT INTO orchestration_requests (prompt) SELECT 'no-op ' || g FROM generate_series(1, $1::int) g`,
    [options.requests]
  )
  const peak = [...rssStart]
  // Once a quarter is done the heap has grown to its working size: from there on it must stay flat.
  let rssWarm: Array<number | null> | null = null
  const sampler = setInterval(() => {
    workers.forEach((w, i) => {
      peak[i] = Math.max(peak[i]!, w.rssKiB() ?? 0)
    })
    if (rssWarm === null) {
      db.query<{ n: number }>("SELECT count(*)::int AS n FROM orchestration_results")
        .then(({ rows }) => {
          if (rssWarm === null && rows[0]!.n >= options.requests / 4) rssWarm = workers.map((w) => w.rssKiB())
        })
        .catch(() => {})
    }
  }, 250)
  await waitUntilSettled(db, options.settleMs).finally(() => clearInterval(sampler))
  const elapsedMs = Date.now() - started
  const rssEnd = workers.map((w) => w.rssKiB())
  const alive = workers.map((w) => w.child.exitCode === null && w.child.signalCode === null)
  const result = await audit(db, { workers, workspaceBase: env.WORKSPACE_BASE })
  const { rows } = await db.query<{ once: number; per_worker: Record<string, number> }>(
    `SELECT (SELECT count(*)::int FROM orchestration_requests WHERE status = 'completed' AND attempts = 1) AS once,
            (SELECT jsonb_object_agg(w, n) FROM (SELECT split_part(worker_id, '/', 1) AS w, count(*)::int AS n
               FROM orchestration_results GROUP BY 1) s) AS per_worker`
  )
  const exits = await Promise.all(workers.map((w) => w.stop()))
  await db.end()
  const mib = (kib: number | null) => (kib === null ? null : Math.round(kib / 102.4) / 10)
  report(`load-${options.requests}`, {
    requests: result.requests,
    processes: options.processes,
    fibers: options.fibers,
    completedOnce: rows[0]!.once,
    perWorker: rows[0]!.per_worker,
    lost: result.lost,
    duplicated: result.duplicated,
    orphans: result.orphans,
    rssStartMiB: rssStart.map(mib),
    rssAtQuarterMiB: (rssWarm ?? rssStart).map(mib),
    rssEndMiB: rssEnd.map(mib),
    rssPeakMiB: peak.map(mib),
    elapsedMs,
    requestsPerSecond: Math.round((options.requests / elapsedMs) * 1000)
  })
  expect(result.problems).toEqual([])
  expect(result.byStatus).toEqual({ completed: options.requests })
  expect(rows[0]!.once).toBe(options.requests)
  expect(alive).toEqual(workers.map(() => true))
  expect(exits.map((e) => e.code)).toEqual(workers.map(() => 0))
  const warm = rssWarm ?? rssStart
  rssEnd.forEach((end, i) => {
    expect(end! - warm[i]!).toBeLessThan(options.maxGrowthMiB * 1024)
  })
}
