/**
 * The operator's commands: status, results, retry, cancel, release-stale.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Console, Effect, Layer, Option, Schema } from "effect"
import * as Database from "../db/Database.js"
import { migrate } from "../db/Migrator.js"
import { DurationMs } from "../pipeline/PipelineFile.js"
import * as Admin from "../queue/Admin.js"
import { Queue } from "../queue/Queue.js"

const withDatabase = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.zipRight(migrate(), effect).pipe(Effect.provide(Queue.layer.pipe(Layer.provideMerge(Database.layer))))

/** Columns padded to their widest cell. */
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

const seconds = (s: number | null) => (s === null ? "—" : `${Math.round(s)} s`)

export const status = Command.make("status", {}, () =>
  withDatabase(
    Effect.gen(function* () {
      const counts = yield* Effect.flatMap(Queue, (q) => q.status)
      const rows = counts.byStatus.length === 0 ? [{ status: "(no requests)", count: 0 }] : counts.byStatus
      yield* Console.log(
        table(
          ["status", "count"],
          rows.map((r) => [r.status, String(r.count)])
        )
      )
      if (counts.oldestPendingSeconds !== null) {
        yield* Console.log(`oldest pending: ${seconds(counts.oldestPendingSeconds)}`)
      }
      const running = yield* Admin.inFlight
      if (running.length > 0) {
        yield* Console.log(
          `\nin flight:\n${table(
            ["request", "worker", "stage", "attempt", "running", "lease left"],
            running.map((r) => [
              r.id,
              r.claimed_by ?? "—",
              r.current_stage ?? "—",
              String(r.attempts),
              seconds(r.running_s),
              seconds(r.lease_left_s)
            ])
          )}`
        )
      }
    })
  )
).pipe(Command.withDescription("Counts by status, the oldest pending request, and what runs where."))

export const results = Command.make(
  "results",
  {
    request: Options.text("request").pipe(Options.withDescription("Only this request's attempts."), Options.optional),
    limit: Options.integer("limit").pipe(Options.withDefault(20))
  },
  ({ request, limit }) =>
    withDatabase(
      Effect.gen(function* () {
        const rows = yield* Admin.results({ requestId: Option.getOrUndefined(request), limit })
        if (rows.length === 0) return yield* Console.log("no results")
        yield* Console.log(
          table(
            ["request", "attempt", "status", "ms", "cost_usd", "at", "error"],
            rows.map((r) => [
              r.request_id,
              String(r.attempt),
              r.status,
              r.duration_ms === null ? "—" : String(r.duration_ms),
              r.cost_usd ?? "—",
              r.created_at.toISOString(),
              (r.error ?? "").slice(0, 80)
            ])
          )
        )
      })
    )
).pipe(Command.withDescription("Recent results, or every attempt of one request."))

const requestId = Args.text({ name: "request-id" })

export const retry = Command.make("retry", { id: requestId }, ({ id }) =>
  withDatabase(Effect.flatMap(Admin.retry(id), Console.log))
).pipe(Command.withDescription("Put a failed, cancelled or completed request back to pending for one more attempt."))

export const cancel = Command.make("cancel", { id: requestId }, ({ id }) =>
  withDatabase(Effect.flatMap(Admin.cancel(id), Console.log))
).pipe(Command.withDescription("Cancel a request: a pending one never runs, a running one is stopped."))

export const releaseStale = Command.make(
  "release-stale",
  {
    olderThan: Options.text("older-than").pipe(
      Options.withDefault("30m"),
      Options.withDescription("Claimed longer ago than this (30m, 2h, …).")
    )
  },
  ({ olderThan }) =>
    withDatabase(
      Effect.gen(function* () {
        const ms = yield* Schema.decodeUnknown(DurationMs)(olderThan).pipe(
          Effect.mapError(
            () => new Admin.AdminError({ message: `--older-than ${olderThan} is not a duration (30m, 2h)` })
          )
        )
        const released = yield* Admin.releaseStale(ms)
        yield* Console.log(`released ${released} request(s) claimed more than ${olderThan} ago`)
      })
    )
).pipe(Command.withDescription("release_stale_requests: put requests claimed too long ago back to pending."))
