/**
 * The run observer that writes progress into `orchestration_events`. Writing an event never fails a run:
 * a lost event is logged and the request goes on.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { type Observer, type RunEvent, RunObserver } from "../pipeline/RunObserver.js"
import { jsonParam } from "./Queue.js"

const row = (event: RunEvent) => {
  switch (event._tag) {
    case "Claimed":
      return { kind: "claimed", stage: "claim", message: `claimed by ${event.workerId}`, data: null }
    case "StageStarted":
      return { kind: "stage-started", stage: event.stage, message: null, data: null }
    case "StageFinished":
      return {
        kind: "stage-finished",
        stage: event.stage,
        message: event.reason ?? null,
        data: { outcome: event.outcome, duration_ms: event.durationMs }
      }
    case "AgentEvent":
      return { kind: "agent", stage: event.stage, message: event.summary, data: event.data }
  }
}

export const make = Effect.map(
  SqlClient.SqlClient,
  (sql): Observer => ({
    onEvent: (event) => {
      const r = row(event)
      return sql`INSERT INTO orchestration_events (request_id, attempt, kind, stage, message, data)
        VALUES (${event.requestId}, ${event.attempt}, ${r.kind}, ${r.stage}, ${r.message}, ${jsonParam(r.data)}::jsonb)`.pipe(
        Effect.asVoid,
        Effect.catchAll((error) => Effect.logWarning(`could not record a ${r.kind} event`, error))
      )
    }
  })
)

/** Every event to the database, and to `also` (the demo's printer) too. */
export const layer = (also?: Observer) =>
  Layer.effect(
    RunObserver,
    Effect.map(make, (log) =>
      also ? { onEvent: (event: RunEvent) => Effect.zipRight(log.onEvent(event), also.onEvent(event)) } : log
    )
  )
