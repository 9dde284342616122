/**
 * The run observer that writes progress into `orchestration_events`. Writing an event never fails a run,
 * nor waits on the database: an event is queued in memory with the time it happened, and one writer fiber
 * inserts what queued up over the next `flushDelayMs` in one statement. A commit is the dearest part of a
 * write, so a worker's events cost at most twenty commits a second however many requests it runs, instead
 * of one commit per event on each request's path; and those commits do not wait for the disk (see
 * insert_events in sql/000006), so the claims' and records' commits never queue behind them.
 * `stageline logs --follow` polls four times a second, so it still sees events live. The events of a
 * request deleted meanwhile are skipped, and the rest of the batch lands (sql/000012); a batch that cannot
 * be written is logged and dropped. What is queued when the worker stops is written before it exits.
 */
import { Deferred, Effect, Exit, Fiber, FiberId, Layer } from "effect"
import * as Prepared from "../db/Prepared.js"
import { type Observer, type RunEvent, RunObserver } from "../pipeline/RunObserver.js"
import { jsonParam } from "./Queue.js"

interface EventRow {
  readonly request_id: string
  readonly attempt: number
  /**
   * When it happened, in ms since the epoch: the database makes the timestamp (sql/000012). Formatting a
   * Date for every event took 2-3% of the runner's time for a request that does nothing.
   */
  readonly at_ms: number
  readonly kind: string
  readonly stage: string | null
  readonly message: string | null
  readonly data: unknown
}

/**
 * A row, every field given: spreading shared fields into each row instead made it seven times dearer,
 * and a request makes five.
 */
const rowOf = (
  event: RunEvent,
  at: number,
  kind: string,
  stage: string | null,
  message: string | null,
  data: unknown
): EventRow => ({
  request_id: event.requestId,
  attempt: event.attempt,
  at_ms: at,
  kind,
  stage,
  message,
  data
})

const row = (event: RunEvent, at: number): EventRow => {
  switch (event._tag) {
    case "Claimed":
      return rowOf(event, at, "claimed", "claim", `claimed by ${event.workerId}`, null)
    case "StageStarted":
      return rowOf(event, at, "stage-started", event.stage, null, null)
    case "StageFinished":
      return rowOf(event, at, "stage-finished", event.stage, event.reason ?? null, {
        outcome: event.outcome,
        duration_ms: event.durationMs
      })
    case "AgentEvent":
      return rowOf(event, at, "agent", event.stage, event.summary, event.data)
  }
}

/** Events per statement at most; a longer queue is written in several. */
const maxBatch = 500

/** How long the writer gathers events after the first one before it writes them. */
export const flushDelayMs = 50

export const make = Effect.gen(function* () {
  const insertEvents = Prepared.prepare(
    yield* Prepared.PgPool,
    "stageline_insert_events_v1",
    "SELECT insert_events($1::jsonb)"
  )
  let queued: Array<EventRow> = []
  let wake = Deferred.unsafeMake<void>(FiberId.none)

  const write = (batch: ReadonlyArray<EventRow>) =>
    // insert_events (sql/000006) does not wait for the disk: see there why that is right for progress.
    insertEvents([jsonParam(batch)]).pipe(
      Effect.asVoid,
      Effect.catchAll((error) => Effect.logWarning(`could not record ${batch.length} event(s)`, error))
    )

  /** Writes what is queued now, in order; what is queued meanwhile waits for the next turn. */
  const flush = Effect.suspend(() => {
    const taken = queued
    queued = []
    const batches = Array.from({ length: Math.ceil(taken.length / maxBatch) }, (_, i) =>
      taken.slice(i * maxBatch, (i + 1) * maxBatch)
    )
    return Effect.forEach(batches, write, { discard: true })
  })

  const writer = Effect.gen(function* () {
    while (true) {
      yield* Deferred.await(wake)
      yield* Effect.sleep(flushDelayMs)
      wake = Deferred.unsafeMake<void>(FiberId.none)
      // A batch taken from the queue is written even if the writer is being stopped.
      yield* Effect.uninterruptible(flush)
    }
  })
  // Not traced: each batch would be a trace of its own, up to twenty a second.
  const writing = yield* Effect.forkDaemon(writer.pipe(Effect.withTracerEnabled(false)))
  // When the worker goes: the batch in flight lands, then what is still queued.
  yield* Effect.addFinalizer(() =>
    Effect.zipRight(Fiber.interrupt(writing), flush.pipe(Effect.withTracerEnabled(false)))
  )

  return {
    onEvent: (event) =>
      Effect.sync(() => {
        queued.push(row(event, Date.now()))
        if (queued.length === 1) Deferred.unsafeDone(wake, Exit.void)
      })
  } satisfies Observer
})

/** Every event to the database, and to `also` (the demo's printer) too. */
export const layer = (also?: Observer) =>
  Layer.scoped(
    RunObserver,
    Effect.map(make, (log) =>
      also ? { onEvent: (event: RunEvent) => Effect.zipRight(log.onEvent(event), also.onEvent(event)) } : log
    )
  )
