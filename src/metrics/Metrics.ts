/**
 * The worker's metrics, as Effect `Metric`s in the process-wide registry; `/metrics` renders them in
 * Prometheus text format (see PrometheusText.ts). Names follow Prometheus conventions: seconds for time,
 * `_total` for counters. The queue's depth is not counted here but read from the database on each scrape
 * (see QueueGauges.ts), so every worker reports the same queue whatever it has seen.
 */
import { Effect, Metric, MetricBoundaries, MetricKey, Scope } from "effect"
import type { ResultRow } from "../queue/Queue.js"

/**
 * A tagged metric made once per set of tags. Made with `Metric.tagged`, a metric builds its tagged key
 * again, hashes it and looks it up in the registry on every update; made from a key that has the tags
 * already, it looks its series up once.
 */
const memo = <Args extends ReadonlyArray<string>, M>(make: (...args: Args) => M) => {
  const made = new Map<string, M>()
  return (...args: Args) => {
    // NUL is in no stage id, status or tag value.
    const key = args.join("\0")
    let metric = made.get(key)
    if (metric === undefined) {
      metric = make(...args)
      made.set(key, metric)
    }
    return metric
  }
}

/** 5 ms to about 22 minutes, four times wider each: from a no-op stage to a long agent run. */
const durationBuckets = MetricBoundaries.exponential({ start: 0.005, factor: 4, count: 10 })

/** 1 ms to about 4.4 minutes: instant pickup through a poll interval and a backoff. */
const latencyBuckets = MetricBoundaries.exponential({ start: 0.001, factor: 4, count: 10 })

/** Requests whose final attempt was recorded, by that attempt's result status. */
const requests = MetricKey.counter("stageline_requests_total", {
  description:
    "Requests finished by this worker, by final result status (success, error, partial, timeout, cancelled).",
  incremental: true
})

/** Every recorded attempt, final or retried. */
const attempts = MetricKey.counter("stageline_attempts_total", {
  description: "Attempts recorded by this worker, by result status and whether the request will be tried again.",
  incremental: true
})

const stageDuration = MetricKey.histogram(
  "stageline_stage_duration_seconds",
  durationBuckets,
  "How long each stage ran, by stage and outcome (ok, failed); the claim's wait for work is not counted."
)

export const pickupLatency = Metric.histogram(
  "stageline_pickup_latency_seconds",
  latencyBuckets,
  "From the moment a request could run (created, or its run_after) to its claim."
)

export const inFlight = Metric.gauge("stageline_in_flight", {
  description: "Requests this worker process is taking through the pipeline now."
})

export const agentCost = Metric.counter("stageline_agent_cost_usd_total", {
  description: "The agents' reported cost in US dollars (total_cost_usd), summed over recorded attempts.",
  incremental: true
})

const agentTokens = MetricKey.counter("stageline_agent_tokens_total", {
  description: "The agents' reported tokens, by kind (input, output, cache_read, cache_creation).",
  incremental: true
})

const tokenKinds = [
  ["input", "input_tokens"],
  ["output", "output_tokens"],
  ["cache_read", "cache_read_input_tokens"],
  ["cache_creation", "cache_creation_input_tokens"]
] as const

const attemptsOf = memo((status: string, retried: "true" | "false") =>
  Metric.fromMetricKey(MetricKey.tagged(MetricKey.tagged(attempts, "status", status), "retried", retried))
)

const requestsOf = memo((status: string) => Metric.fromMetricKey(MetricKey.tagged(requests, "status", status)))

const tokensOf = memo((kind: string) => Metric.fromMetricKey(MetricKey.tagged(agentTokens, "kind", kind)))

/**
 * Updates `metric` (a counter adds, a histogram observes) in one step. `Metric.update` first reads the
 * fiber's metric labels (`Effect.tagMetrics`, which the engine never sets): three steps for each of the
 * several updates a request makes.
 */
const bump = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>, value: NoInfer<In>) =>
  metric.unsafeUpdate(value, noLabels)
const noLabels: ReadonlyArray<never> = []

/** What a recorded attempt adds: its status, and the agent's cost and tokens when it reported them. */
export const countRecorded = (result: ResultRow, final: boolean) => {
  bump(attemptsOf(result.status, final ? "false" : "true"), 1)
  if (final) bump(requestsOf(result.status), 1)
  if (result.costUsd !== null && Number.isFinite(result.costUsd)) bump(agentCost, result.costUsd)
  const usage = (result.usage ?? {}) as Record<string, unknown>
  for (const [kind, key] of tokenKinds) {
    const n = usage[key]
    if (typeof n === "number" && n > 0) bump(tokensOf(kind), n)
  }
}

const stageDurationOf = memo((stage: string, outcome: string) =>
  Metric.fromMetricKey(MetricKey.tagged(MetricKey.tagged(stageDuration, "stage", stage), "outcome", outcome))
)

export const stageRan = (stage: string, outcome: "ok" | "failed", durationMs: number) =>
  Effect.sync(() => bump(stageDurationOf(stage, outcome), durationMs / 1000))

/** The seconds between when a request became claimable and its claim, by the database's clock. */
export const claimed = (request: {
  readonly created_at: Date
  readonly run_after?: Date | undefined
  readonly claimed_at: Date | null
}) =>
  Effect.sync(() => {
    if (request.claimed_at === null) return
    const from = Math.max(request.created_at.getTime(), request.run_after?.getTime() ?? 0)
    bump(pickupLatency, Math.max(0, (request.claimed_at.getTime() - from) / 1000))
  })

/**
 * Counts a request in flight until the function returned is called (when its stages are through) or its
 * run's `scope` closes, whichever comes first: a finalizer on the scope the run has anyway catches a run
 * that fails or is interrupted, where a bracket around the stages would cost a dozen steps of its own.
 */
export const countInFlight = (scope: Scope.Scope) =>
  Effect.suspend(() => {
    // A gauge's update sets it; its modify adds.
    inFlight.unsafeModify(1, noLabels)
    let counted = true
    const done = () => {
      if (!counted) return
      counted = false
      inFlight.unsafeModify(-1, noLabels)
    }
    return Effect.as(Scope.addFinalizer(scope, Effect.sync(done)), done)
  })
