/**
 * What one statement costs the worker, and how much of it is the commit waiting for the disk: each of
 * stageline's hot statements sent one after another on one connection, with the server's default
 * (`synchronous_commit = on`: the commit returns once its WAL is flushed) and with
 * `synchronous_commit = off` (the same work, the flush left out), beside a bare round trip and a one-row
 * INSERT. Not a target and not part of `npm run bench`: a profiling aid for the throughput targets at low
 * concurrency, where a request waits for its statement.
 *
 *   npm run bench:statements              1,000 calls of each
 *   STATEMENTS_N=5000 npm run bench:statements
 */
import type pg from "pg"
import { claimStatement, recordAndClaimStatement } from "../src/queue/Queue.js"
import { connect, createDatabase, dropDatabase } from "./support/databases.js"
import { startStageline } from "./support/stageline.js"
import { attemptOf, benchWorkers, type Claimed } from "./support/statements.js"
import { median, round } from "./support/stats.js"
import { noopPipeline } from "./support/systems.js"
import { stagelineTables } from "./support/tables.js"

const calls = Number(process.env.STATEMENTS_N ?? 1000)

/** Milliseconds each of `calls` calls of `once` took, one after another. */
const timed = async (once: (i: number) => Promise<unknown>) => {
  const ms: Array<number> = []
  for (let i = 0; i < calls; i++) {
    const start = performance.now()
    await once(i)
    ms.push(performance.now() - start)
  }
  return round(median(ms), 3)
}

/** Each statement's p50 on `client`, whose synchronous_commit is already set. */
const costs = async (client: pg.Client, tables: ReturnType<typeof stagelineTables>) => {
  await tables.empty()
  const roundTrip = await timed(() => client.query({ name: "bench_select_1", text: "SELECT 1" }))
  const insert = await timed(() => client.query({ name: "bench_insert", text: "INSERT INTO bench_rows VALUES (1)" }))
  // The claim alone: a request for one worker, from a queue that always has one.
  await tables.insertMany(calls)
  const claim = await timed((i) => client.query({ ...claimStatement, values: [[`bench-claim-${i}`], 60_000] }))
  /** A record of `n` attempts that claims the next `n`, as a worker of `n` fibers in step sends it. */
  const recordAndClaim = async (n: number) => {
    await tables.empty()
    await tables.insertMany(calls * n + n)
    const workers = benchWorkers(n)
    let claimed = (await client.query<Claimed>({ ...claimStatement, values: [workers, 60_000] })).rows
    return timed(async () => {
      const { rows } = await client.query<Partial<Claimed>>({
        ...recordAndClaimStatement,
        values: [JSON.stringify(claimed.map(attemptOf)), workers, 60_000]
      })
      claimed = rows.filter((row): row is Claimed => row.id !== null)
    })
  }
  return { roundTrip, insert, claim, recordOne: await recordAndClaim(1), recordFour: await recordAndClaim(4) }
}

const db = await createDatabase("statements")
const admin = await connect(db.url)
try {
  // stageline's own migrations make the schema: a worker started and stopped at once.
  await (
    await startStageline({ url: db.url, database: db.name, pipeline: noopPipeline, workerCount: 1, observer: admin })
  ).stop()
  await admin.query("CREATE TABLE bench_rows (v integer)")
  const tables = stagelineTables(admin)
  const measured: Record<"on" | "off", Awaited<ReturnType<typeof costs>>> = {} as never
  for (const mode of ["on", "off"] as const) {
    const client = await connect(db.url)
    try {
      await client.query(`SET synchronous_commit = ${mode}`)
      measured[mode] = await costs(client, tables)
    } finally {
      await client.end()
    }
  }
  console.log(`stageline's statements, one after another on one connection (p50 ms of ${calls} calls each):\n`)
  console.log("| statement | durable commit | the flush left out | the flush |")
  console.log("| --- | ---: | ---: | ---: |")
  const row = (label: string, key: keyof (typeof measured)["on"]) =>
    console.log(
      `| ${label} | ${measured.on[key]} | ${measured.off[key]} | ${round(measured.on[key] - measured.off[key], 3)} |`
    )
  row("a round trip (`SELECT 1`, nothing to commit)", "roundTrip")
  row("a one-row INSERT", "insert")
  row("a claim for one worker", "claim")
  row("a record that claims the next, one request", "recordOne")
  row("a record that claims the next, four requests", "recordFour")
} finally {
  await admin.end()
  await dropDatabase(db.name)
}
