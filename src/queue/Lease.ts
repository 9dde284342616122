/**
 * Keeping a claim: a fiber, scoped to the request, renews its lease every third of the lease period and
 * reports the stage it is in. If the request is cancelled (heard at once through NOTIFY, or at the next
 * heartbeat) or is no longer this worker's (an operator released it, or the lease ran out while the
 * database was unreachable), the run is aborted: the running stage is interrupted, and record still runs.
 */
import { Deferred, Effect, Exit } from "effect"
import { WorkerConfig } from "../config/WorkerConfig.js"
import type { RunInfo, StageFailure } from "../pipeline/RunContext.js"
import { Queue } from "./Queue.js"
import type { ClaimedRequest } from "./Request.js"
import { Wakeups } from "./Wakeups.js"

const aborted = (run: RunInfo, tag: string, status: StageFailure["status"], message: string): StageFailure => ({
  stage: run.currentStage ?? "claim",
  origin: "stageline (built-in)",
  tag,
  message,
  status
})

export const keepLease = (request: ClaimedRequest, run: RunInfo) =>
  Effect.gen(function* () {
    const queue = yield* Queue
    const wakeups = yield* Wakeups
    const { leaseMs } = yield* WorkerConfig
    const cancel = () =>
      Deferred.unsafeDone(run.abort, Exit.succeed(aborted(run, "Cancelled", "cancelled", "the request was cancelled")))
    yield* wakeups.watchCancel(request.id, cancel)

    const beat = Effect.gen(function* () {
      while (!(yield* Deferred.isDone(run.abort))) {
        yield* Effect.sleep(Math.max(100, Math.floor(leaseMs / 3)))
        const state = yield* queue
          .heartbeat(request.id, run.workerId, leaseMs, run.currentStage)
          .pipe(
            Effect.catchAll((error) =>
              Effect.as(
                Effect.logWarning(`could not renew the lease of request ${request.id}; trying again`, error).pipe(
                  Effect.annotateLogs({ stage: run.currentStage ?? "claim" })
                ),
                "held" as const
              )
            )
          )
        if (state === "cancelled") cancel()
        if (state === "lost") {
          yield* Deferred.succeed(
            run.abort,
            aborted(
              run,
              "LeaseLost",
              "error",
              `request ${request.id} is no longer held by ${run.workerId} (its lease ran out, or it was released)`
            )
          )
        }
      }
    })
    // Forked by the claim, before the run's own annotations: it names its request itself.
    yield* Effect.forkScoped(beat.pipe(Effect.annotateLogs({ request_id: request.id, attempt: request.attempts })))
  })
