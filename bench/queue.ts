/**
 * The queue benchmarks, side by side with graphile-worker and pg-boss on the same PostgreSQL and machine,
 * in one run: throughput, pickup latency, claim latency as the queue grows, the per-request cost above a
 * bare spawn of the agent, and worker memory. Ratios and medians over alternating rounds, because the
 * machine is shared. Nothing is asserted; the targets are compared in the table.
 *
 *   npm run bench                       everything, 20,000 jobs per throughput run
 *   BENCH_N=2000 npm run bench          quick: fewer jobs, samples and requests
 *   BENCH_ONLY=throughput,pickup npm run bench   some sections (written to queue-partial.*)
 *
 * A run of every section is written to bench/results/queue.{json,md} and its table into the README.
 *
 * Settings: BENCH_N, BENCH_ROUNDS (3), BENCH_CONCURRENCY (1,4,16,64), BENCH_PICKUP (N/20), BENCH_DEPTHS
 * (0,100000,1000000), BENCH_OVERHEAD_N (N/200, at least 20), BENCH_MEMORY_WORKERS (1,8,64),
 * BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/postgres).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { measureMemory } from "./memory.js"
import { measurePickup } from "./pickup-latency.js"
import { measureOverhead } from "./process-overhead.js"
import { measureDepth } from "./queue-depth.js"
import { adminUrl, connect, dropAll } from "./support/databases.js"
import { load, machine } from "./support/machine.js"
import { renderTable } from "./support/report.js"
import { stagelineStatements } from "./support/statements.js"
import { graphileWorker, pgBoss, type QueueSystem, stageline } from "./support/systems.js"
import { measureThroughput, summariseThroughput } from "./throughput.js"

const int = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback)
const ints = (name: string, fallback: ReadonlyArray<number>) =>
  process.env[name] ? process.env[name].split(",").map(Number) : fallback

const n = int("BENCH_N", 20_000)
const only = process.env.BENCH_ONLY?.split(",")
const wanted = (section: string) => only === undefined || only.includes(section)
const rounds = int("BENCH_ROUNDS", 3)

// Stopped early (Ctrl-C, a timeout): the databases it made go with it.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    dropAll().finally(() => process.exit(130))
  })
}

const main = async () => {
  const admin = await connect(adminUrl)
  const result: Record<string, unknown> = {
    measured_at: new Date().toISOString(),
    machine: await machine(admin),
    load_at_start: load()
  }
  await admin.end()
  console.log(`machine: ${JSON.stringify(result.machine)}; load ${result.load_at_start}`)
  const systems: Array<QueueSystem> = []
  try {
    if (wanted("throughput") || wanted("pickup")) {
      systems.push(await stageline(), await graphileWorker("default"), await graphileWorker("batched"), await pgBoss())
    }
    if (wanted("throughput")) {
      console.log(`throughput: ${n} no-op jobs per run, ${rounds} rounds`)
      const concurrencies = ints("BENCH_CONCURRENCY", [1, 4, 16, 64])
      // The reference for what the runner costs: its statements with no runner around them.
      const reference = await stagelineStatements()
      systems.push(reference)
      const runs = await measureThroughput(systems, { n, concurrencies, rounds })
      const names = systems.map((s) => s.name)
      systems.splice(systems.indexOf(reference), 1)
      await reference.close()
      result.throughput = { jobs: n, rounds, summary: summariseThroughput(runs, names), runs }
    }
    if (wanted("pickup")) {
      const samples = int("BENCH_PICKUP", Math.max(50, Math.round(n / 20)))
      console.log(`pickup latency: ${samples} jobs one at a time`)
      // The batched mode is left out: its local queue changes nothing for a job inserted into an idle worker.
      result.pickup = await measurePickup(
        systems.filter((s) => s.name !== "graphile-worker (batched)"),
        { samples, blocks: 10 }
      )
    }
    for (const system of systems) await system.close()
    systems.length = 0
    if (wanted("depth")) {
      const depths = ints("BENCH_DEPTHS", [0, 100_000, 1_000_000])
      console.log(`queue depth: claim latency at ${depths.join(", ")} pending`)
      result.depth = await measureDepth({ depths, claims: 200 })
    }
    if (wanted("overhead")) {
      const requests = int("BENCH_OVERHEAD_N", Math.max(20, Math.round(n / 200)))
      console.log(`process overhead: ${requests} agent runs, bare and through stageline, ${rounds} rounds`)
      result.overhead = await measureOverhead({ n: requests, rounds })
    }
    if (wanted("memory")) {
      const workerCounts = ints("BENCH_MEMORY_WORKERS", [1, 8, 64])
      console.log(`memory: WORKER_COUNT ${workerCounts.join(", ")}`)
      result.memory = await measureMemory({ workerCounts, agentMs: 2_000 })
    }
  } finally {
    for (const system of systems) await system.close().catch(() => {})
    await dropAll()
  }
  result.load_at_end = load()
  const base = path.join(import.meta.dirname, "results", only ? "queue-partial" : "queue")
  const table = renderTable(result)
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`)
  fs.writeFileSync(`${base}.md`, table)
  console.log(`\n${table}\n(written to ${path.relative(process.cwd(), base)}.json and .md)`)
  if (!only) {
    // The README shows the latest full run.
    const readme = path.join(import.meta.dirname, "..", "README.md")
    const text = fs.readFileSync(readme, "utf8")
    const start = "<!-- bench:queue:start -->"
    const end = "<!-- bench:queue:end -->"
    const i = text.indexOf(start)
    const j = text.indexOf(end)
    if (i !== -1 && j > i) fs.writeFileSync(readme, `${text.slice(0, i + start.length)}\n${table}${text.slice(j)}`)
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
