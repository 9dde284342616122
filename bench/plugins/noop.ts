/**
 * noop: a stage that does nothing, standing in for the agent when the benchmarks measure what the runner
 * itself costs. A plugin like any other, loaded from the pipeline file; the engine knows nothing of it.
 *
 * It reports when it started (milliseconds since the epoch, sub-millisecond precise), so the pickup
 * benchmark can read from the result row how long a request waited between its insert and its first
 * stage after the claim.
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

export default Stage.make({
  name: "noop",
  description: "Does nothing; stands in for the agent stage in the benchmarks.",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: ["noop"],
  run: () => () => Effect.sync(() => ({ noop: { started_at_ms: performance.timeOrigin + performance.now() } }))
})
