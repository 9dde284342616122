/**
 * noop: a stage that does nothing, standing in for the agent when the benchmarks measure what the runner
 * itself costs. A plugin like any other, loaded from the pipeline file; the engine knows nothing of it.
 *
 * It reports when it started (milliseconds since the epoch, sub-millisecond precise), in the result row
 * and to the benchmark in the same process (see `startedHook`): the pickup benchmark waits for that call,
 * as it waits for graphile-worker's and pg-boss's handlers, instead of polling the database for the row
 * while the worker runs.
 */
import { Effect, Schema } from "effect"
import { Stage } from "stageline/pipeline"

export interface NoopReport {
  readonly started_at_ms: number
}

declare module "stageline/pipeline" {
  interface RunContext {
    readonly noop: NoopReport
  }
}

/** Where a benchmark in the worker's own process hears of each start: `(requestId, startedAtMs) => void`. */
export const startedHook = Symbol.for("stageline.bench.noop-started")

export default Stage.make({
  name: "noop",
  description: "Does nothing; stands in for the agent stage in the benchmarks.",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: ["noop"],
  run: () => (ctx) =>
    Effect.sync(() => {
      const started_at_ms = performance.timeOrigin + performance.now()
      const hook = (globalThis as { [startedHook]?: (requestId: string, at: number) => void })[startedHook]
      hook?.(ctx.request.id, started_at_ms)
      return { noop: { started_at_ms } }
    })
})
