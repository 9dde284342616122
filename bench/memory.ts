/**
 * Memory: the resident set of a real worker process (`stageline run`, started as a deployment starts it)
 * idle, and at its peak while twice WORKER_COUNT requests run the test-double agent for a while each, so
 * that every fiber holds a running agent. Only the worker's own RSS is counted: the agents are processes
 * of their own.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { agentPipelines } from "./process-overhead.js"
import { connect, createDatabase, dropDatabase } from "./support/databases.js"
import { load } from "./support/machine.js"
import { median, sleep, until } from "./support/stats.js"
import { stagelineTables } from "./support/tables.js"

const bin = path.join(import.meta.dirname, "..", "bin", "stageline.mjs")

const rssMB = (pid: number, field = "VmRSS") => {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kib = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN)
  return Math.round(((kib * 1024) / 1e6) * 10) / 10
}

export const measureMemory = async (options: {
  readonly workerCounts: ReadonlyArray<number>
  readonly agentMs: number
}) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "stageline-bench-memory-"))
  const pipeline = agentPipelines(root).minimal
  const db = await createDatabase("memory")
  const client = await connect(db.url)
  const results = []
  try {
    for (const workerCount of options.workerCounts) {
      // Executed, as the image's entrypoint and npm's bin link run it: its shebang sets the heap flags.
      const child = spawn(bin, ["run", "--pipeline", pipeline], {
        env: {
          ...process.env,
          DATABASE_URL: db.url,
          WORKER_COUNT: String(workerCount),
          LOG_LEVEL: "warning",
          LOG_FORMAT: "json",
          WORKSPACE_BASE: path.join(root, "workspaces")
        },
        stdio: ["ignore", "ignore", "inherit"]
      })
      const exited = new Promise((resolve) => child.on("exit", resolve))
      try {
        // It listens before it migrates: the tables are there once the migrations have committed.
        await until(
          "the worker to listen, migrated",
          async () =>
            (
              await client.query(
                `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'stageline-listen'
                    AND state = 'idle' AND query LIKE 'LISTEN%' AND to_regclass('orchestration_events') IS NOT NULL`,
                [db.name]
              )
            ).rowCount! > 0,
          50,
          60_000
        )
        await stagelineTables(client).empty()
        await sleep(1_000)
        const idle: Array<number> = []
        for (let i = 0; i < 5; i++) {
          idle.push(rssMB(child.pid!))
          await sleep(200)
        }
        const requests = workerCount * 2
        await client.query(`INSERT INTO orchestration_requests (prompt) SELECT $1 FROM generate_series(1, $2)`, [
          `@sleep ${options.agentMs}`,
          requests
        ])
        let peak = 0
        let mostInFlight = 0
        await until(
          "the agent requests to finish",
          async () => {
            peak = Math.max(peak, rssMB(child.pid!))
            const { rows } = await client.query<{ done: number; running: number }>(
              `SELECT count(*) FILTER (WHERE status IN ('completed', 'failed'))::int AS done,
                      count(*) FILTER (WHERE status = 'processing')::int AS running FROM orchestration_requests`
            )
            mostInFlight = Math.max(mostInFlight, rows[0]!.running)
            return rows[0]!.done >= requests
          },
          100,
          300_000
        )
        const result = {
          worker_count: workerCount,
          idle_rss_mb: median(idle),
          load_peak_rss_mb: peak,
          high_water_mb: rssMB(child.pid!, "VmHWM"),
          requests,
          most_in_flight: mostInFlight,
          load: load()
        }
        results.push(result)
        console.log(
          `  memory WORKER_COUNT=${workerCount}: idle ${result.idle_rss_mb} MB, under load ${peak} MB (${mostInFlight} agents at once)`
        )
      } finally {
        child.kill("SIGTERM")
        await exited
      }
    }
  } finally {
    await client.end()
    await dropDatabase(db.name)
    fs.rmSync(root, { recursive: true, force: true })
  }
  return results
}
