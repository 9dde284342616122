/**
 * Keeping claims: one fiber per worker process renews the leases of every request the process runs, in
 * one statement every third of the lease period, and reports the stage each is in. So a process running
 * sixty-four agents sends one heartbeat where it sent sixty-four, and a request costs no fiber or timer of
 * its own to keep its claim. A request is held from its claim until its run's scope closes, or, when its
 * result is written behind the run (see Recorder.writeBehind), until that write lands: the request is
 * still `processing`, and this worker's, until then.
 *
 * If a request is cancelled (heard at once through NOTIFY, or at the next heartbeat) or is no longer this
 * worker's (an operator released it, or the lease ran out while the database was unreachable), its run is
 * aborted: the running stage is interrupted, and record still runs.
 *
 * A worker that cannot reach the database cannot know whether its leases still hold; once most of a
 * lease has passed since the last renewal the database confirmed, it must assume another worker is about
 * to take that request over, and stops its own run first, so the two never run the request at once.
 */
import { Context, Effect, Layer, Scope } from "effect"
import { WorkerConfig } from "../config/WorkerConfig.js"
import { abortRun } from "../pipeline/RunAbort.js"
import type { RunInfo, StageFailure } from "../pipeline/RunContext.js"
import { builtinOrigin } from "../pipeline/StageRegistry.js"
import { type Claim, Queue } from "./Queue.js"
import type { ClaimedRequest } from "./Request.js"
import { Wakeups } from "./Wakeups.js"

const aborted = (run: RunInfo, tag: string, status: StageFailure["status"], message: string): StageFailure => ({
  stage: run.currentStage ?? "claim",
  origin: builtinOrigin,
  tag,
  message,
  status
})

interface Held {
  readonly request: ClaimedRequest
  readonly run: RunInfo
  /** When the renewal the database last confirmed was sent; the claim itself was the first. */
  renewedAt: number
  /** Writes of its result still on their way (see `holdUntilWritten`). */
  writes: number
  /** Whether its run's scope has closed: once no write is on its way either, it is no longer held. */
  runEnded: boolean
}

export interface LeaseKeeper {
  /**
   * Keeps the claim of a request for as long as the scope (its run's) lasts, its lease counted from the
   * claim's statement.
   */
  readonly keep: (claim: Claim, run: RunInfo) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Keeps holding `requestId`, held by a run of this process, after that run ends, until the function
   * returned is called: its result is being written behind the run. Does nothing for a request no run
   * here holds (its lease was lost meanwhile).
   */
  readonly holdUntilWritten: (requestId: string) => () => void
}

export class Leases extends Context.Tag("stageline/Leases")<Leases, LeaseKeeper>() {
  static readonly make = Effect.gen(function* () {
    const queue = yield* Queue
    const wakeups = yield* Wakeups
    const { leaseMs } = yield* WorkerConfig
    const held = new Map<string, Held>()
    const period = Math.max(100, Math.floor(leaseMs / 3))
    const giveUpAfter = Math.floor((leaseMs * 4) / 5)

    /** Whether `h` is still held: its run has not ended, nor lost the request, since `h` was read. */
    const isHeld = (h: Held) => held.get(h.request.id) === h
    const cancel = (run: RunInfo) => abortRun(run, aborted(run, "Cancelled", "cancelled", "the request was cancelled"))
    const lose = (h: Held, message: string) => {
      held.delete(h.request.id)
      abortRun(h.run, aborted(h.run, "LeaseLost", "error", message))
    }
    // The renewer is forked with the layer, outside any run: its lines name the run they speak of.
    const logFor = (h: Held) =>
      Effect.annotateLogs({
        worker_id: h.run.workerId,
        request_id: h.request.id,
        attempt: h.request.attempts,
        stage: h.run.currentStage ?? "claim"
      })

    /**
     * A lease the database has not confirmed for most of its time is given up: the run stops before
     * another worker may take the request over. `reason` says what kept it from being renewed.
     */
    const giveUpIfDue = (
      h: Held,
      now: number,
      reason: { readonly logged: string; readonly couldNot: string; readonly because: string },
      cause?: unknown
    ) => {
      const since = now - h.renewedAt
      if (since < giveUpAfter) return Effect.void
      const message = `could not renew the lease of request ${h.request.id} for ${since} ms${reason.logged}; stopping its run before the lease runs out`
      return (cause === undefined ? Effect.logError(message) : Effect.logError(message, cause)).pipe(
        logFor(h),
        Effect.andThen(() =>
          lose(
            h,
            `the worker ${h.run.workerId} could not ${reason.couldNot} for ${since} ms${reason.because}, and stopped the run so that no other worker runs it at the same time`
          )
        )
      )
    }

    /** One heartbeat for every request held now; returns how long to wait for the next. */
    const beat = Effect.suspend(() => {
      const batch = [...held.values()]
      if (batch.length === 0) return Effect.succeed(period)
      const sent = Date.now()
      const left = Math.min(...batch.map((h) => h.renewedAt + giveUpAfter - sent))
      return queue
        .heartbeat(
          batch.map((h) => ({ requestId: h.request.id, workerId: h.run.workerId, stage: h.run.currentStage })),
          leaseMs
        )
        .pipe(
          Effect.timeoutFail({ duration: Math.max(50, left), onTimeout: () => "no answer in time" }),
          Effect.either,
          Effect.flatMap((answer) =>
            Effect.gen(function* () {
              // A run that ended meanwhile is no longer held: what its heartbeat found concerns nobody.
              const still = batch.filter(isHeld)
              if (answer._tag === "Right") {
                for (const h of still) {
                  const state = answer.right.get(h.request.id)
                  if (state === "lost") {
                    lose(
                      h,
                      `request ${h.request.id} is no longer held by ${h.run.workerId} (its lease ran out, or it was released)`
                    )
                    continue
                  }
                  if (state === "busy") {
                    // Locked by another transaction: not renewed this time. Held that way for most of the
                    // lease, it is given up like one the database cannot be reached to renew.
                    yield* giveUpIfDue(h, Date.now(), {
                      logged: ": another transaction holds its row locked",
                      couldNot: "renew its lease",
                      because: " (another transaction held the request's row locked)"
                    })
                    continue
                  }
                  h.renewedAt = sent
                  if (state === "cancelled") cancel(h.run)
                }
                return period
              }
              const now = Date.now()
              for (const h of still) {
                yield* giveUpIfDue(
                  h,
                  now,
                  { logged: "", couldNot: "reach the database to renew its lease", because: "" },
                  answer.left
                )
              }
              const remaining = still.filter(isHeld)
              if (remaining.length === 0) return period
              yield* Effect.logWarning(
                `could not renew the lease of ${remaining.length} request(s); trying again`,
                answer.left
              ).pipe(
                Effect.annotateLogs({
                  worker_ids: [...new Set(remaining.map((h) => h.run.workerId))].join(","),
                  request_ids: remaining.map((h) => h.request.id).join(",")
                })
              )
              // Try again soon, but leave time for one more attempt before the first of them gives up.
              const soonest = Math.min(...remaining.map((h) => h.renewedAt + giveUpAfter - now))
              return Math.max(50, Math.min(1_000, Math.floor(soonest / 2)))
            })
          )
        )
    })

    const renewer = Effect.gen(function* () {
      let wait = period
      while (true) {
        yield* Effect.sleep(wait)
        // A bug here must not end the heartbeats of every request in the process.
        wait = yield* beat.pipe(
          Effect.catchAllCause((cause) => Effect.as(Effect.logError("the lease heartbeat failed", cause), 1_000))
        )
      }
    })
    // Maintenance: traced, each heartbeat would be a trace of its own every third of a lease.
    yield* Effect.forkScoped(renewer.pipe(Effect.withTracerEnabled(false)))

    // Released by a finalizer added to the run's scope directly: `Effect.addFinalizer` would also diff
    // and restore the fiber's state around two map deletions. Uninterruptible, so that what is registered
    // is always released.
    const keep: LeaseKeeper["keep"] = ({ request, sentAt }, run) =>
      Effect.flatMap(Effect.scope, (scope) => {
        // Claimed again while an earlier run of it still holds it here (its lease ran out meanwhile, and it
        // was put back): the earlier run has lost it, and must stop, as its heartbeat would have found.
        const earlier = held.get(request.id)
        if (earlier !== undefined) {
          lose(
            earlier,
            `request ${request.id} is no longer held by ${earlier.run.workerId}: ${run.workerId} claimed it again`
          )
        }
        const h: Held = { request, run, renewedAt: sentAt, writes: 0, runEnded: false }
        held.set(request.id, h)
        // A cancel heard since the claim was sent (before the run was watching) stops it at once.
        const unwatch = wakeups.watchCancel(request.id, sentAt, () => cancel(run))
        return Scope.addFinalizer(
          scope,
          Effect.sync(() => {
            unwatch()
            h.runEnded = true
            if (h.writes === 0 && isHeld(h)) held.delete(request.id)
          })
        )
      }).pipe(Effect.uninterruptible)

    const holdUntilWritten: LeaseKeeper["holdUntilWritten"] = (requestId) => {
      const h = held.get(requestId)
      if (h === undefined) return () => {}
      h.writes++
      let written = false
      return () => {
        if (written) return
        written = true
        h.writes--
        if (h.writes === 0 && h.runEnded && isHeld(h)) held.delete(requestId)
      }
    }

    return { keep, holdUntilWritten } satisfies LeaseKeeper
  })

  static readonly layer = Layer.scoped(Leases, Leases.make)
}
