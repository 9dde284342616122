/**
 * Writing each attempt's result row, with the request's next status, through Queue.record. The record
 * stage hands the row here in one of two ways:
 *
 * - `write` waits until the row is durable. For a run that something follows after record (a stage that
 *   may read the row).
 * - `writeBehind` returns at once, and the row is written while the worker goes on to its next request.
 *   For a run that ends with record, where nothing after it needs the row. The fiber's teardown of the
 *   run and its next claim then happen while the statement is on its way instead of after it: a fiber
 *   whose next request takes no time no longer idles for every commit (a worker that waited for each
 *   commit spent about twice the CPU a request, its code run cold after every wait; see the README).
 *   Nothing is promised earlier than before: the request stays `processing`, and this worker's lease on
 *   it is kept (Leases.holdUntilWritten), until the row lands; a worker killed before then leaves it to be
 *   taken over when its lease runs out, as one killed in any stage does. The worker's next claim waits for
 *   the statement, which claims its next request (Queue.claim), rather than claim on its own meanwhile; a
 *   worker whose runs are quicker than the statement holds several claimed ahead (Queue.depthAhead), and
 *   runs them while it is out. The first try needs no fiber: the batcher answers it through a callback
 *   (Queue.recordThen). Only a try that failed goes on in a fiber of its own, as does a write that is
 *   traced, so that its span is in the trace.
 *
 * A database that is briefly unreachable (a restart, a failover) does not lose the outcome: the write is
 * tried again for as long as a lease from its first failure. It is safe to repeat: a write that landed but
 * whose answer was lost is found on the next try (`already-recorded`), and one that comes after another
 * worker took the request over changes nothing (`not-owner`).
 *
 * When the worker stops, the layer waits for the writes still on their way, each until it lands or gives
 * up, before the worker exits.
 */
import type * as SqlError from "@effect/sql/SqlError"
import {
  Cause,
  Context,
  Duration,
  Effect,
  Exit,
  FiberRef,
  FiberRefs,
  FiberSet,
  Layer,
  LogLevel,
  Option,
  Runtime,
  Schedule
} from "effect"
import { WorkerConfig } from "../config/WorkerConfig.js"
import { Leases } from "./Lease.js"
import { type ClaimNext, Queue, type RecordOutcome, type ResultRow, type RetryPolicy } from "./Queue.js"

/** An attempt's result, what to do if it failed, and whether to claim the worker's next request with it. */
export interface ResultWrite {
  readonly result: ResultRow
  readonly retry: RetryPolicy
  readonly next?: ClaimNext | undefined
}

export interface RecorderService {
  /** Writes the result and waits until it is durable, trying again as above. */
  readonly write: (write: ResultWrite) => Effect.Effect<RecordOutcome, SqlError.SqlError>
  /**
   * Hands the result over and returns at once: it is written as `write` writes it, behind the run, and the
   * request's lease is kept until it lands. A write that gives up is logged.
   */
  readonly writeBehind: (write: ResultWrite) => Effect.Effect<void>
}

/** Whether a line at info, which says each write that landed, would be written at all. */
const logsInfo = (runtime: Runtime.Runtime<never>) =>
  LogLevel.lessThanEqual(FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentMinimumLogLevel), LogLevel.Info)

const warn = (error: unknown) => Effect.logWarning("could not record the outcome; trying again", error)

/** What the worker says once the write landed (the run's log annotations name the request). */
const said = ({ result }: ResultWrite, outcome: RecordOutcome) => {
  switch (outcome) {
    case "not-owner":
      return Effect.logWarning(
        `request ${result.requestId} is no longer held by ${result.workerId} (released or taken over); its result was not written`
      )
    case "retrying":
      return Effect.logInfo(
        `recorded ${result.status} for attempt ${result.attempt} of request ${result.requestId}; it will be tried again`
      )
    default:
      return Effect.logInfo(`recorded ${result.status} for request ${result.requestId} in ${result.durationMs} ms`)
  }
}

export class Recorder extends Context.Tag("stageline/Recorder")<Recorder, RecorderService>() {
  static readonly make = Effect.gen(function* () {
    const queue = yield* Queue
    const leases = yield* Leases
    const { leaseMs } = yield* WorkerConfig

    // Waits 200 ms, then 400, 800, … up to 5 s between tries, for as long as a lease from the first
    // failure. The schedule is built only once a write has failed: almost every write succeeds at once,
    // and building it cost more than the write's call.
    const triedAgain = (w: ResultWrite, error: SqlError.SqlError) => {
      const failedAt = Date.now()
      return warn(error).pipe(
        Effect.zipRight(Effect.sleep(Duration.millis(200))),
        Effect.zipRight(
          Effect.retry(
            // A write tried again claims nothing ahead: the next claim stage claims as usual.
            Effect.tapError(queue.record(w.result, w.retry), warn),
            Schedule.exponential(Duration.millis(400)).pipe(
              Schedule.modifyDelay((_, d) => Duration.min(d, Duration.seconds(5))),
              Schedule.check(() => Date.now() - failedAt < leaseMs)
            )
          )
        ),
        Effect.tap((outcome) => said(w, outcome))
      )
    }

    const write: RecorderService["write"] = (w) =>
      queue.record(w.result, w.retry, w.next).pipe(
        Effect.tap((outcome) => said(w, outcome)),
        Effect.catchAll((error) => triedAgain(w, error))
      )

    // Writes behind the run: those whose first try is on its way (no fiber), and those tried again (each
    // in a fiber of its own). A failed first try joins the set before it leaves the count.
    let firstTries = 0
    let whenNoFirstTries: Array<() => void> = []
    const firstTryEnded = () => {
      firstTries--
      if (firstTries === 0) for (const resume of whenNoFirstTries.splice(0)) resume()
    }
    const noFirstTries = Effect.async<void>((resume) => {
      if (firstTries === 0) return resume(Effect.void)
      const done = () => resume(Effect.void)
      whenNoFirstTries.push(done)
      return Effect.sync(() => {
        whenNoFirstTries = whenNoFirstTries.filter((f) => f !== done)
      })
    })
    const onTheirWay = yield* FiberSet.make<void>()
    const left = Effect.map(FiberSet.size(onTheirWay), (n) => n + firstTries)
    // Added after the set, so it runs first when the worker stops: the writes land before the set would
    // interrupt them. Each gives up a lease after its first failure; that bounds the wait too.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        const writing = yield* left
        if (writing === 0) return
        yield* Effect.logInfo(`waiting for ${writing} result(s) still being written`)
        const landed = yield* Effect.timeoutOption(
          Effect.interruptible(Effect.zipRight(noFirstTries, FiberSet.awaitEmpty(onTheirWay))),
          leaseMs
        )
        if (Option.isNone(landed)) {
          yield* Effect.logError(
            `${yield* left} result(s) were still not written after ${leaseMs} ms; their requests stay processing until their leases run out, and are then taken over`
          )
        }
      })
    )

    const gaveUp = (w: ResultWrite) => (error: unknown) =>
      Effect.logError(
        `could not record the outcome of attempt ${w.result.attempt} of request ${w.result.requestId} within ${leaseMs} ms; it stays processing until its lease runs out, and is then taken over`,
        error
      )
    /** Runs `effect` in a fiber of its own, started at once, that the close waits for. */
    const behind = (runtime: Runtime.Runtime<never>, effect: Effect.Effect<void>) => {
      FiberSet.unsafeAdd(onTheirWay, Runtime.runFork(runtime)(effect))
    }

    // The first try is sent at once, on the caller's stack, with no fiber to wait for its answer: by the
    // time writeBehind returns, the record is queued for its statement, and Queue.claim knows that the
    // worker's next request is on its way with it. Only a try that failed goes on in a fiber, with the
    // caller's log annotations, as does a trace that should show the write.
    const writeBehind: RecorderService["writeBehind"] = (w) =>
      Effect.flatMap(Effect.runtime<never>(), (runtime) =>
        Effect.sync(() => {
          const written = leases.holdUntilWritten(w.result.requestId)
          if (FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentTracerEnabled)) {
            return behind(
              runtime,
              write(w).pipe(Effect.catchAll(gaveUp(w)), Effect.ensuring(Effect.sync(written)), Effect.asVoid)
            )
          }
          firstTries++
          queue.recordThen(w.result, w.retry, w.next, (exit) => {
            const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
            if (Option.isSome(error)) {
              behind(
                runtime,
                triedAgain(w, error.value).pipe(
                  Effect.catchAll(gaveUp(w)),
                  Effect.ensuring(Effect.sync(written)),
                  Effect.asVoid
                )
              )
            } else {
              written()
              // Said from the batcher's own callback, which must not throw: a line that cannot be written
              // loses nothing, a sender stopped would lose every write after it.
              try {
                if (Exit.isFailure(exit)) {
                  // Not the statement's failure: the batcher was closed under it, or a defect.
                  Runtime.runSync(runtime)(
                    Effect.logError(
                      `could not record the outcome of attempt ${w.result.attempt} of request ${w.result.requestId}; it stays processing until its lease runs out, and is then taken over`,
                      exit.cause
                    )
                  )
                } else if (exit.value === "not-owner" || logsInfo(runtime))
                  Runtime.runSync(runtime)(said(w, exit.value))
              } catch {}
            }
            firstTryEnded()
          })
        })
      )

    return { write, writeBehind } satisfies RecorderService
  })

  static readonly layer = Layer.scoped(Recorder, Recorder.make)
}
