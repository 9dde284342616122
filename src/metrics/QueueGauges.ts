/**
 * The gauges read from the database at scrape time: the queue's depth and what all workers are processing.
 * A scrape that cannot reach the database still answers, with `stageline_database_up 0` and the last
 * depths it read.
 */
import { Effect, Metric } from "effect"
import { queueDepth } from "../queue/Admin.js"

const depth = Metric.gauge("stageline_queue_depth", {
  description: "Pending requests in the database, by state: ready (claimable now) or scheduled (run_after ahead)."
})

const processing = Metric.gauge("stageline_requests_processing", {
  description: "Requests in the database being processed by any worker."
})

const databaseUp = Metric.gauge("stageline_database_up", {
  description: "1 when the last scrape could read the queue from the database, else 0."
})

export const refresh = queueDepth.pipe(
  Effect.timeout("2 seconds"),
  Effect.tap((d) =>
    Effect.all([
      Metric.set(Metric.tagged(depth, "state", "ready"), d.ready),
      Metric.set(Metric.tagged(depth, "state", "scheduled"), d.scheduled),
      Metric.set(processing, d.processing),
      Metric.set(databaseUp, 1)
    ])
  ),
  Effect.asVoid,
  Effect.catchAllCause(() => Metric.set(databaseUp, 0))
)
