/**
 * claim: takes the next pending request for this worker, with a lease the worker keeps renewing while the
 * request runs (see src/queue/Lease.ts). Waits while the queue is empty: the insert trigger's NOTIFY
 * claims a request for it before it wakes (see waitForWork) and, failing that, it polls every
 * `POLL_INTERVAL_MS`.
 *
 * A request the worker's last record claimed ahead for it is taken first, with no statement (see
 * Queue.claim); a worker that stops puts it back.
 *
 * The claim and the release that undoes it on interruption are registered together, uninterruptibly: a
 * request claimed here is either handed to the next stages or put back to pending, never left stranded.
 */
import { Effect, Exit, Option, Schema, Scope } from "effect"
import { WorkerConfig } from "../src/config/WorkerConfig.js"
import * as Stage from "../src/pipeline/Stage.js"
import { Leases } from "../src/queue/Lease.js"
import { Queue, type QueueService } from "../src/queue/Queue.js"
import type { ClaimedRequest } from "../src/queue/Request.js"
import { type WakeupSource, Wakeups } from "../src/queue/Wakeups.js"
import { Lifecycle, type LifecycleState, onDrain, WorkerStopping } from "../src/worker/Lifecycle.js"

interface Idle {
  readonly queue: QueueService
  readonly wakeups: WakeupSource
  readonly lifecycle: LifecycleState
  readonly workerId: string
  readonly leaseMs: number
  readonly pollIntervalMs: number
}

/**
 * Until there is work (since `ticket`), the poll interval, or the shutdown, whichever comes first:
 * callbacks and a timer, where a race of three effects would fork three fibers for every wait.
 *
 * A notification that a request is pending does not wake the fiber to claim: the request is claimed for
 * it first, straight from the notification (Queue.claimIdle), and the fiber wakes to take it. When that
 * claim got none (another worker was quicker), the fiber waits on. Any other wake-up, and a claim that
 * failed, wake it to claim for itself.
 */
const waitForWork = (idle: Idle, ticket: number) =>
  Effect.async<void>((resume) => {
    let done = false
    let stopListening = () => {}
    let stopClaiming = () => {}
    const stops: Array<() => void> = [() => stopListening(), () => stopClaiming()]
    const wake = () => {
      if (done) return
      done = true
      for (const stop of stops) stop()
      resume(Effect.void)
    }
    const listen = (since: number) => {
      stopListening = idle.wakeups.onWake(since, (woken) => {
        if (!woken.byNotification) return wake()
        stopClaiming = idle.queue.claimIdle(idle.workerId, idle.leaseMs, (outcome) =>
          outcome === "none" ? listen(woken.ticket) : wake()
        )
      })
    }
    const timer = setTimeout(wake, idle.pollIntervalMs)
    stops.push(() => clearTimeout(timer))
    listen(ticket)
    stops.push(onDrain(idle.lifecycle, wake))
    // A wake-up that came before the listeners were all in place has already ended the wait.
    if (done) for (const stop of stops) stop()
    return Effect.sync(() => {
      done = true
      for (const stop of stops) stop()
    })
  })

/**
 * Puts `request` back to pending if the run is interrupted. On the run's scope directly:
 * `Effect.addFinalizer` would diff and restore the fiber's state for every request, to serve only the rare
 * one that is interrupted.
 */
const putBackIfInterrupted = (queue: QueueService, request: ClaimedRequest, workerId: string) =>
  Effect.flatMap(Effect.scope, (scope) =>
    Scope.addFinalizerExit(scope, (exit) =>
      Exit.isInterrupted(exit)
        ? queue.release(request.id, workerId).pipe(
            Effect.tap((released) =>
              released === "pending"
                ? Effect.logInfo(`put request ${request.id} back to pending`)
                : released === "cancelled"
                  ? Effect.logInfo(`request ${request.id} was cancelled; it ends without this attempt`)
                  : Effect.void
            ),
            Effect.catchAll((error) => Effect.logError(`could not put request ${request.id} back to pending`, error)),
            Effect.annotateLogs({ request_id: request.id, attempt: request.attempts })
          )
        : Effect.void
    )
  )

export default Stage.make({
  name: "claim",
  description: "Claims the next pending request (FOR UPDATE SKIP LOCKED), waiting on NOTIFY with a poll fallback.",
  options: Schema.Struct({}),
  requires: [],
  provides: ["request"],
  run: () => (input) =>
    Effect.gen(function* () {
      const queue = yield* Queue
      const leases = yield* Leases
      const wakeups = yield* Wakeups
      const lifecycle = yield* Lifecycle
      const { pollIntervalMs, leaseMs } = yield* WorkerConfig
      const workerId = input.run.workerId

      while (true) {
        if (yield* Lifecycle.isDraining) {
          yield* queue.releaseAhead(workerId)
          return yield* new WorkerStopping({ reason: "draining", message: "the worker is shutting down" })
        }
        // Taken before the claim, so a notification arriving during it is not missed.
        const ticket = yield* wakeups.ticket
        const claimed = yield* Effect.uninterruptible(
          queue
            .claim(workerId, leaseMs)
            .pipe(
              Effect.tap((claim) =>
                Option.isSome(claim) ? putBackIfInterrupted(queue, claim.value.request, workerId) : Effect.void
              )
            )
        )
        if (Option.isSome(claimed)) {
          // A claim sent just before the shutdown began can still land after it: hand that request back.
          if (yield* Lifecycle.isDraining) {
            yield* queue.release(claimed.value.request.id, workerId)
            return yield* new WorkerStopping({ reason: "draining", message: "the worker is shutting down" })
          }
          yield* leases.keep(claimed.value, input.run)
          return { request: claimed.value.request }
        }
        if (lifecycle.once) {
          return yield* new WorkerStopping({ reason: "queue-empty", message: "no pending requests left" })
        }
        yield* waitForWork({ queue, wakeups, lifecycle, workerId, leaseMs, pollIntervalMs }, ticket)
      }
    })
})
