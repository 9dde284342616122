/**
 * `stageline logs ID [--follow]`: a request's progress from `orchestration_events`, live with --follow
 * until the request is finished, its stage-by-stage line kept below the events.
 * `stageline logs --follow`: every request's line, live, until interrupted.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as SqlClient from "@effect/sql/SqlClient"
import { Console, Effect, Layer, Option } from "effect"
import * as Database from "../db/Database.js"
import { migrate } from "../db/Migrator.js"
import * as Admin from "../queue/Admin.js"
import { AdminError, type EventRow } from "../queue/Admin.js"
import * as Progress from "./Progress.js"

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

/** The events that move a request's line, as the progress view takes them. */
const progressOf = (requestId: string, e: EventRow): Progress.ProgressEvent | null =>
  e.kind === "claimed" || e.kind === "stage-started" || e.kind === "stage-finished"
    ? {
        requestId,
        attempt: e.attempt,
        kind: e.kind,
        stage: e.stage ?? "",
        outcome: e.data?.outcome as Progress.ProgressEvent["outcome"],
        durationMs: e.data?.duration_ms,
        at: e.at.getTime()
      }
    : null

const finished = new Set(["completed", "failed", "cancelled"])

const poll = Effect.sleep("250 millis")

/** One request's events; with `follow`, until it has ended. */
const oneRequest = (id: string, follow: boolean) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const view = follow ? Progress.make({}) : null
    if (view) yield* view.ticking
    let last = "0"
    let seenFinished = false
    while (true) {
      const [request] = yield* sql<{
        status: string
      }>`SELECT status FROM orchestration_requests WHERE id::text = ${id}`
      if (!request) return yield* new AdminError({ message: `no request ${id}` })
      const events = yield* Admin.events(id, last)
      for (const e of events) {
        if (!view) {
          yield* Console.log(formatEvent(e))
          continue
        }
        yield* view.note(formatEvent(e))
        const step = progressOf(id, e)
        if (step) yield* view.onEvent(step)
      }
      if (events.length > 0) last = events[events.length - 1]!.id
      if (!view) return
      // Events are written a moment after they happen (in batches), so the request must have been seen
      // finished once already, with nothing new since, before the last of them is taken to be in.
      if (finished.has(request.status) && events.length === 0 && seenFinished) {
        for (const p of yield* view.active) yield* view.finish(p.requestId, p.attempt)
        return yield* Console.log(`request ${id} is ${request.status}`)
      }
      seenFinished = finished.has(request.status)
      yield* poll
    }
  })

/** Every request's line, from the attempts running now on, until interrupted. */
const everyRequest = Effect.gen(function* () {
  const view = Progress.make({})
  yield* view.ticking
  let last = yield* Admin.followStart
  yield* Console.error("following every request from the attempts running now on (Ctrl-C to stop)")
  // The lines whose request was seen ended at the last poll (events land a moment late, in batches).
  let endedBefore = new Set<string>()
  while (true) {
    // Statuses before events: a request seen ended, with no event since, has nothing more to show.
    const before = yield* view.active
    const statuses = yield* Admin.statuses([...new Set(before.map((p) => p.requestId))])
    const events = yield* Admin.eventsOfAll(last)
    for (const e of events) {
      const step = progressOf(e.request_id, e)
      if (step) yield* view.onEvent(step)
    }
    if (events.length > 0) last = events[events.length - 1]!.id
    const moved = new Set(events.map((e) => `${e.request_id}#${e.attempt}`))
    const ended = new Set<string>()
    for (const p of before) {
      const key = `${p.requestId}#${p.attempt}`
      const status = statuses.get(p.requestId) ?? ""
      // Ended, or back to pending for another attempt (a line of its own): twice, with nothing new since.
      if (!(finished.has(status) || status === "pending") || moved.has(key)) continue
      if (endedBefore.has(key)) yield* view.finish(p.requestId, p.attempt)
      else ended.add(key)
    }
    endedBefore = ended
    if (events.length === 0) yield* poll
  }
})

export const logs = Command.make(
  "logs",
  {
    id: Args.text({ name: "request-id" }).pipe(Args.optional),
    follow: Options.boolean("follow").pipe(
      Options.withAlias("f"),
      Options.withDescription("Keep printing until the request ends (without an id: every request, until stopped).")
    )
  },
  ({ id, follow }) =>
    Effect.gen(function* () {
      yield* migrate()
      if (Option.isSome(id)) return yield* oneRequest(id.value, follow)
      if (!follow) {
        return yield* new AdminError({ message: "give a request id, or --follow to watch every request" })
      }
      return yield* everyRequest
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(Database.layer)))
).pipe(
  Command.withDescription(
    "A request's progress: each stage and the agent's steps; --follow to watch it live, or every request's line."
  )
)
