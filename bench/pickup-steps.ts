/**
 * Where an idle worker's pickup goes, step by step, for stageline and graphile-worker (default mode): jobs
 * inserted one at a time, as in the pickup benchmark, each timed from the INSERT's commit (as the
 * inserting client sees it) to
 *   1. the notification reaching the worker's process (negative: before the inserting client saw its commit),
 *   2. the worker sending its claim (the first statement after the notification),
 *   3. the claim's answer,
 *   4. the job's first step (stageline: the first stage after the claim; graphile-worker: its task).
 * The steps are read off `pg` itself: its client's notification events and statements, wrapped in this
 * process. Not a target and not part of `npm run bench`: a profiling aid for the pickup target.
 *
 *   npm run bench:pickup-steps            300 jobs each, 5 ms apart
 *   STEPS_N=1000 npm run bench:pickup-steps
 *   STEPS_IDLE_MS=50 npm run bench:pickup-steps    the worker idle 50 ms before each job
 */
import pg from "pg"
import { median, now, round, sleep } from "./support/stats.js"
import { graphileWorker, type QueueSystem, stageline } from "./support/systems.js"

const samples = Number(process.env.STEPS_N ?? 300)
/** How long the worker waits idle before each job: the longer, the colder the code its pickup runs. */
const idleMs = Number(process.env.STEPS_IDLE_MS ?? 5)

/** What happened after the last insert: set by the wrapped `pg`, cleared before each insert. */
let marks: { notified?: number; sent?: number; answered?: number } = {}
let watching = false

type Emit = (this: pg.Client, event: string, ...args: Array<unknown>) => boolean
const emit = pg.Client.prototype.emit as Emit
pg.Client.prototype.emit = function (this: pg.Client, event: string, ...args: Array<unknown>) {
  if (watching && event === "notification" && marks.notified === undefined) marks.notified = now()
  return emit.call(this, event, ...args)
} as typeof pg.Client.prototype.emit

type Query = (this: pg.Client, ...args: Array<unknown>) => unknown
const query = pg.Client.prototype.query as unknown as Query
pg.Client.prototype.query = function (this: pg.Client, ...args: Array<unknown>) {
  if (!watching || marks.notified === undefined || marks.sent !== undefined) return query.apply(this, args)
  marks.sent = now()
  const answered = () => {
    marks.answered ??= now()
  }
  // A callback, as stageline's statements give, or a promise, as graphile-worker's await.
  const last = args.length - 1
  const callback = args[last]
  if (typeof callback === "function") {
    args[last] = (...results: Array<unknown>) => {
      answered()
      return callback(...results)
    }
    return query.apply(this, args)
  }
  const result = query.apply(this, args)
  if (result instanceof Promise) result.then(answered, answered)
  return result
} as unknown as typeof pg.Client.prototype.query

const steps = async (system: QueueSystem) => {
  await system.reset()
  const worker = await system.start(1)
  const rows: Array<{ notified: number; sent: number; answered: number; started: number }> = []
  try {
    for (let i = 0; i < samples; i++) {
      marks = {}
      watching = true
      const token = await worker.insertOne()
      const committed = now()
      const started = await worker.startedAt(token)
      watching = false
      const { notified, sent, answered } = marks
      if (notified !== undefined && sent !== undefined && answered !== undefined) {
        rows.push({
          notified: notified - committed,
          sent: sent - notified,
          answered: answered - sent,
          started: started - answered
        })
      }
      await sleep(idleMs)
    }
  } finally {
    await worker.stop()
  }
  const p50 = (key: keyof (typeof rows)[number]) => round(median(rows.map((r) => r[key])), 3)
  return {
    system: system.name,
    samples: rows.length,
    notified: p50("notified"),
    sent: p50("sent"),
    answered: p50("answered"),
    started: p50("started")
  }
}

const systems = [await stageline(), await graphileWorker("default")]
try {
  const results: Array<Awaited<ReturnType<typeof steps>>> = []
  for (const system of systems) results.push(await steps(system))
  console.log(
    `pickup, step by step (p50 ms of ${samples} jobs inserted one at a time, the worker idle ${idleMs} ms before each):\n`
  )
  console.log(`| step | ${results.map((r) => r.system).join(" | ")} |`)
  console.log(`| --- | ${results.map(() => "---:").join(" | ")} |`)
  const row = (label: string, key: "notified" | "sent" | "answered" | "started") =>
    console.log(`| ${label} | ${results.map((r) => r[key]).join(" | ")} |`)
  row("commit seen by the inserting client → notification in the worker", "notified")
  row("notification → claim sent", "sent")
  row("claim sent → its answer", "answered")
  row("answer → the job's first step", "started")
  console.log(
    `| sum of the steps | ${results.map((r) => round(r.notified + r.sent + r.answered + r.started, 3)).join(" | ")} |`
  )
} finally {
  for (const system of systems) await system.close()
}
