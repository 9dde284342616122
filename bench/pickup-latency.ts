/**
 * Pickup latency: jobs inserted one at a time into an idle worker (concurrency 1), each timed from the
 * moment its INSERT committed (as the inserting client sees it) to the start of its handler: for stageline
 * the first stage after the claim, for graphile-worker and pg-boss their task function. Each handler tells
 * the benchmark, in the same process, when it started (the noop plugin also writes it in the result row);
 * nothing polls the database while a job is picked up. All the systems' workers run at once, idle, and
 * take turns in blocks, so the machine's load falls on each of them alike.
 */
import { load } from "./support/machine.js"
import { now, percentile, rotate, round, sleep } from "./support/stats.js"
import type { QueueSystem, Running } from "./support/systems.js"

export const measurePickup = async (
  systems: ReadonlyArray<QueueSystem>,
  options: { readonly samples: number; readonly blocks: number }
) => {
  const latencies = new Map<string, Array<number>>(systems.map((s) => [s.name, []]))
  const loads: Array<number> = []
  const running = new Map<string, Running>()
  try {
    for (const system of systems) {
      await system.reset()
      running.set(system.name, await system.start(1))
    }
    const perBlock = Math.ceil(options.samples / options.blocks)
    for (let b = 0; b < options.blocks; b++) {
      for (const system of rotate(systems, b)) {
        const worker = running.get(system.name)!
        for (let i = 0; i < perBlock && latencies.get(system.name)!.length < options.samples; i++) {
          const token = await worker.insertOne()
          const committed = now()
          const started = await worker.startedAt(token)
          latencies.get(system.name)!.push(started - committed)
          // Back to idle before the next one, so each insert meets a waiting worker.
          await sleep(5)
        }
      }
      loads.push(load())
    }
  } finally {
    for (const worker of running.values()) await worker.stop()
  }
  return {
    samples: options.samples,
    load: loads,
    by_system: Object.fromEntries(
      systems.map((s) => {
        const xs = latencies.get(s.name)!
        return [
          s.name,
          {
            p50_ms: round(percentile(xs, 50)),
            p95_ms: round(percentile(xs, 95)),
            p99_ms: round(percentile(xs, 99)),
            max_ms: round(percentile(xs, 100))
          }
        ]
      })
    )
  }
}
