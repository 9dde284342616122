/**
 * Throughput: `n` no-op jobs inserted in one transaction into idle workers at a given concurrency, timed
 * from the commit to the last completion committed (polled every 20 ms, for every system alike). Rounds
 * alternate the systems' order so that whatever else loads the machine hits each of them.
 */
import { load } from "./support/machine.js"
import { median, now, rotate, round, until } from "./support/stats.js"
import type { QueueSystem } from "./support/systems.js"

export interface ThroughputRun {
  readonly system: string
  readonly concurrency: number
  readonly round: number
  readonly jobs: number
  readonly ms: number
  readonly jobs_per_s: number
  /**
   * The benchmark process's event loop busy over the run, per job: every system's worker runs in this
   * process, so this is the CPU its worker's main thread spent on a job (the benchmark's own poll every
   * 20 ms included, alike for every system).
   */
  readonly main_thread_us_per_job: number
  readonly load: number
}

export const measureThroughput = async (
  systems: ReadonlyArray<QueueSystem>,
  options: { readonly n: number; readonly concurrencies: ReadonlyArray<number>; readonly rounds: number }
) => {
  const runs: Array<ThroughputRun> = []
  for (let r = 0; r < options.rounds; r++) {
    for (const [ci, concurrency] of options.concurrencies.entries()) {
      for (const system of rotate(systems, r + ci)) {
        await system.reset()
        const worker = await system.start(concurrency)
        try {
          await worker.insertMany(options.n)
          const started = now()
          const busy = performance.eventLoopUtilization()
          await until(
            `${system.name} to finish ${options.n} jobs`,
            async () => (await worker.completed()) >= options.n,
            20
          )
          const ms = now() - started
          const busyMs = performance.eventLoopUtilization(busy).active
          const run = {
            system: system.name,
            concurrency,
            round: r + 1,
            jobs: options.n,
            ms: round(ms, 1),
            jobs_per_s: Math.round((options.n / ms) * 1000),
            main_thread_us_per_job: round((busyMs * 1000) / options.n, 1),
            load: load()
          }
          runs.push(run)
          console.log(
            `  throughput round ${run.round} c=${concurrency} ${system.name}: ${run.jobs_per_s} jobs/s, ${run.main_thread_us_per_job} µs of main thread a job (load ${run.load})`
          )
        } finally {
          await worker.stop()
        }
      }
    }
  }
  return runs
}

/** Per concurrency: each system's median jobs/s, and the median over rounds of stageline's ratio to each. */
export const summariseThroughput = (runs: ReadonlyArray<ThroughputRun>, systems: ReadonlyArray<string>) => {
  const concurrencies = [...new Set(runs.map((r) => r.concurrency))]
  return concurrencies.map((concurrency) => {
    const at = runs.filter((r) => r.concurrency === concurrency)
    const busy = (system: string) => median(at.filter((r) => r.system === system).map((r) => r.main_thread_us_per_job))
    const rate = (system: string, round?: number) =>
      at.filter((r) => r.system === system && (round === undefined || r.round === round)).map((r) => r.jobs_per_s)
    const rounds = [...new Set(at.map((r) => r.round))]
    const ratioTo = (other: string) =>
      round(median(rounds.map((r) => (rate("stageline", r)[0] ?? 0) / (rate(other, r)[0] ?? Number.NaN))), 2)
    return {
      concurrency,
      jobs_per_s: Object.fromEntries(systems.map((s) => [s, median(rate(s))])),
      main_thread_us_per_job: Object.fromEntries(systems.map((s) => [s, busy(s)])),
      stageline_vs_graphile_default: ratioTo("graphile-worker"),
      stageline_vs_graphile_batched: ratioTo("graphile-worker (batched)"),
      stageline_vs_pg_boss: ratioTo("pg-boss"),
      stageline_vs_statements_alone: ratioTo("stageline statements alone")
    }
  })
}
