/**
 * Keeping a claim: a fiber, scoped to the request, renews its lease every third of the lease period and
 * reports the stage it is in. If the request is cancelled (heard at once through NOTIFY, or at the next
 * heartbeat) or is no longer this worker's (an operator released it, or the lease ran out while the
 * database was unreachable), the run is aborted: the running stage is interrupted, and record still runs.
 *
 * A worker that cannot reach the database cannot know whether its lease still holds; once most of the
 * lease has passed since the last renewal the database confirmed, it must assume another worker is about
 * to take the request over, and stops its own run first, so the two never run the request at once.
 */
import { Deferred, Effect } from "effect"
import { WorkerConfig } from "../config/WorkerConfig.js"
import { abortRun } from "../pipeline/RunAbort.js"
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
    const cancel = () => abortRun(run, aborted(run, "Cancelled", "cancelled", "the request was cancelled"))
    yield* wakeups.watchCancel(request.id, cancel)

    const lost = (message: string) => Effect.sync(() => abortRun(run, aborted(run, "LeaseLost", "error", message)))
    // The claim itself renewed the lease just now; each renewal is timed from when it was sent.
    let renewedAt = Date.now()
    const giveUpAfter = Math.floor((leaseMs * 4) / 5)
    const beat = Effect.gen(function* () {
      let wait = Math.max(100, Math.floor(leaseMs / 3))
      while (!(yield* Deferred.isDone(run.abort))) {
        yield* Effect.sleep(wait)
        const sent = Date.now()
        const left = renewedAt + giveUpAfter - sent
        const state = yield* queue
          .heartbeat(request.id, run.workerId, leaseMs, run.currentStage)
          .pipe(
            Effect.timeoutFail({ duration: Math.max(50, left), onTimeout: () => "no answer in time" }),
            Effect.either
          )
        if (state._tag === "Right") {
          renewedAt = sent
          wait = Math.max(100, Math.floor(leaseMs / 3))
          if (state.right === "cancelled") cancel()
          if (state.right === "lost") {
            yield* lost(
              `request ${request.id} is no longer held by ${run.workerId} (its lease ran out, or it was released)`
            )
          }
          continue
        }
        if (Date.now() - renewedAt >= giveUpAfter) {
          yield* Effect.logError(
            `could not renew the lease of request ${request.id} for ${Date.now() - renewedAt} ms; stopping its run before the lease runs out`,
            state.left
          )
          yield* lost(
            `the worker ${run.workerId} could not reach the database to renew its lease for ${
              Date.now() - renewedAt
            } ms, and stopped the run so that no other worker runs it at the same time`
          )
          return
        }
        yield* Effect.logWarning(`could not renew the lease of request ${request.id}; trying again`, state.left).pipe(
          Effect.annotateLogs({ stage: run.currentStage ?? "claim" })
        )
        // Try again soon, but leave time for one more attempt before giving up.
        wait = Math.max(50, Math.min(1_000, Math.floor((renewedAt + giveUpAfter - Date.now()) / 2)))
      }
    })
    // Forked by the claim, before the run's own annotations: it names its request itself.
    yield* Effect.forkScoped(beat.pipe(Effect.annotateLogs({ request_id: request.id, attempt: request.attempts })))
  })
