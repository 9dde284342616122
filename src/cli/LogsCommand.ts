/**
 * `stageline logs ID [--follow]`: a request's progress from `orchestration_events`, live with --follow
 * until the request is finished.
 */
import { Args, Command, Options } from "@effect/cli"
import { SqlClient } from "@effect/sql"
import { Console, Effect, Layer } from "effect"
import * as Database from "../db/Database.js"
import { migrate } from "../db/Migrator.js"
import { AdminError } from "../queue/Admin.js"

interface EventRow {
  readonly id: string
  readonly at: Date
  readonly attempt: number
  readonly kind: string
  readonly stage: string | null
  readonly message: string | null
  readonly data: { outcome?: string; duration_ms?: number } | null
}

export const formatEvent = (e: EventRow): string => {
  const time = e.at.toISOString().slice(11, 23)
  const where = `#${e.attempt} ${(e.stage ?? "").padEnd(22)}`
  switch (e.kind) {
    case "stage-started":
      return `${time}  ${where}  started`
    case "stage-finished":
      return `${time}  ${where}  ${e.data?.outcome ?? "finished"} in ${e.data?.duration_ms ?? "?"} ms${e.message ? ` (${e.message})` : ""}`
    default:
      return `${time}  ${where}  ${e.message ?? e.kind}`
  }
}

const finished = new Set(["completed", "failed", "cancelled"])

export const logs = Command.make(
  "logs",
  {
    id: Args.text({ name: "request-id" }),
    follow: Options.boolean("follow").pipe(
      Options.withAlias("f"),
      Options.withDescription("Keep printing until the request ends.")
    )
  },
  ({ id, follow }) =>
    Effect.gen(function* () {
      yield* migrate()
      const sql = yield* SqlClient.SqlClient
      let last = "0"
      let seenFinished = false
      while (true) {
        const [request] = yield* sql<{
          status: string
        }>`SELECT status FROM orchestration_requests WHERE id::text = ${id}`
        if (!request) return yield* new AdminError({ message: `no request ${id}` })
        const events = yield* sql<EventRow>`SELECT id::text AS id, at, attempt, kind, stage, message, data
          FROM orchestration_events WHERE request_id::text = ${id} AND id > ${last}::bigint ORDER BY id`
        for (const e of events) yield* Console.log(formatEvent(e))
        if (events.length > 0) last = events[events.length - 1]!.id
        if (!follow) return
        // Events are written a moment after they happen (in batches), so the request must have been seen
        // finished once already, with nothing new since, before the last of them is taken to be in.
        if (finished.has(request.status) && events.length === 0 && seenFinished) {
          return yield* Console.log(`request ${id} is ${request.status}`)
        }
        seenFinished = finished.has(request.status)
        yield* Effect.sleep("250 millis")
      }
    }).pipe(Effect.provide(Layer.mergeAll(Database.layer)))
).pipe(Command.withDescription("A request's progress: each stage and the agent's steps; --follow to watch it live."))
