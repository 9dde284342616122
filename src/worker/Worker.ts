/**
 * The worker supervisor: `WORKER_COUNT` fibers, each running the pipeline over and over, one request at a
 * time.
 *
 * Shutdown: when the process is asked to stop (SIGINT/SIGTERM interrupt the main fiber), the supervisor
 * first drains: no fiber claims again, and requests in flight get `STAGELINE_SHUTDOWN_GRACE_MS` to finish.
 * Whatever is still running then (or at once, on a second signal) is interrupted: its agent's process tree
 * is ended and the request is put back to pending without counting the attempt.
 */
import { Deferred, Effect, Exit, Fiber, Layer, Ref } from "effect"
import { AgentSettings } from "../agent/AgentSettings.js"
import { WorkerConfig } from "../config/WorkerConfig.js"
import type { CompiledPipeline } from "../pipeline/Compiler.js"
import { runOnce } from "../pipeline/Runner.js"
import type { Observer } from "../pipeline/RunObserver.js"
import { PipelineLocation } from "../pipeline/Stage.js"
import { reapOrphans } from "../process/ProcessTree.js"
import * as EventLog from "../queue/EventLog.js"
import { Leases } from "../queue/Lease.js"
import { Queue } from "../queue/Queue.js"
import { Recorder } from "../queue/Recorder.js"
import { Wakeups } from "../queue/Wakeups.js"
import { Lifecycle } from "./Lifecycle.js"
import { reclaimAbandonedWorkspaces } from "./Workspaces.js"

export interface WorkerSummary {
  readonly processed: number
  readonly failed: number
}

const slotLoop = (pipeline: CompiledPipeline, workerId: string, totals: { processed: number; failed: number }) =>
  Effect.gen(function* () {
    let claimFailures = 0
    while (true) {
      const outcome = yield* runOnce(pipeline, workerId)
      switch (outcome._tag) {
        case "Stopped":
          yield* Effect.logDebug(`worker ${workerId} stops: ${outcome.reason}`)
          return
        case "ClaimFailed": {
          claimFailures++
          const delay = Math.min(500 * 2 ** Math.min(claimFailures - 1, 6), 30_000)
          yield* Effect.logError(`claiming failed (${outcome.message}); trying again in ${delay} ms`)
          yield* Effect.sleep(delay)
          break
        }
        case "Processed":
          claimFailures = 0
          totals.processed++
          if (outcome.failure) totals.failed++
      }
    }
  })

/** Ends what the agents of a worker that was killed left running (see ProcessTree.reapOrphans). */
const reapLeftovers = Effect.suspend(() => {
  const reaped = reapOrphans()
  return reaped > 0 ? Effect.logWarning(`ended ${reaped} process(es) left by a worker that was killed`) : Effect.void
})

/**
 * Any live worker puts back the requests of dead ones: every half lease it re-queues (or fails, once their
 * attempts are used up) requests whose lease ran out, each lost attempt getting a result row.
 */
const rescueExpiredLeases = Effect.gen(function* () {
  const queue = yield* Queue
  const wakeups = yield* Wakeups
  const config = yield* WorkerConfig
  while (true) {
    yield* Effect.sleep(Math.max(250, Math.floor(config.leaseMs / 2)))
    const rescued = yield* queue
      .rescue(config.maxAttempts, config.retryBackoffMs, config.retryOn.includes("crash"))
      .pipe(Effect.catchAll((error) => Effect.as(Effect.logWarning("could not look for expired leases", error), [])))
    yield* reapLeftovers
    // A worker killed on this machine left its workspace behind; once its request is rescued (by any
    // worker) or finished, the directory is nobody's, and it must not wait for the next worker start.
    yield* reclaimAbandonedWorkspaces.pipe(
      Effect.catchAll((error) => Effect.logWarning("could not look for abandoned workspaces", error))
    )
    for (const r of rescued) {
      yield* Effect.logWarning(
        `request ${r.id}: worker ${r.claimed_by} stopped renewing its lease on attempt ${r.attempt}; ${
          r.status === "pending" ? "it will be tried again" : "no attempts left, it failed"
        }`
      )
    }
    if (rescued.some((r) => r.status === "pending")) yield* wakeups.wakeAll
  }
})

/** Runs the worker fibers until they stop (`--once`: the queue is empty) or the process is asked to stop. */
export const run = (pipeline: CompiledPipeline) =>
  Effect.gen(function* () {
    const config = yield* WorkerConfig
    const lifecycle = yield* Lifecycle
    const totals = { processed: 0, failed: 0 }
    const slots = Array.from({ length: config.workerCount }, (_, i) => `${config.workerName}/${i + 1}`)
    yield* Effect.logInfo(
      `worker ${config.workerName} running pipeline "${pipeline.name}" with ${slots.length} fiber(s)${
        lifecycle.once ? " until the queue is empty" : ""
      }`
    )
    yield* reapLeftovers
    yield* reclaimAbandonedWorkspaces.pipe(
      Effect.catchAll((error) => Effect.logWarning("could not look for abandoned workspaces", error))
    )
    // Maintenance, every half lease: traced, it would be a trace of its own every few seconds.
    yield* Effect.forkScoped(rescueExpiredLeases.pipe(Effect.withTracerEnabled(false)))
    yield* Ref.set(lifecycle.supervisor, "running")
    // A daemon, so that interrupting this fiber does not interrupt requests in flight: the drain decides.
    const workers = yield* Effect.forkDaemon(
      Effect.forEach(slots, (id) => slotLoop(pipeline, id, totals), { concurrency: "unbounded", discard: true }).pipe(
        Effect.ensuring(Ref.set(lifecycle.supervisor, "stopped"))
      )
    )
    // Runs as the interruption finalizer of this fiber, so it is uninterruptible; fibers it forked would be
    // too (a race's loser could never be stopped), so the three ways the wait ends are plain callbacks.
    const drain = Effect.gen(function* () {
      yield* Lifecycle.drain
      yield* Effect.logInfo(
        `shutting down: no new requests; in-flight ones have ${config.shutdownGraceMs} ms to finish (signal again to stop now)`
      )
      const ended = yield* Deferred.make<"drained" | "forced" | "grace-over">()
      const end = (how: "drained" | "forced" | "grace-over") => () => Deferred.unsafeDone(ended, Exit.succeed(how))
      const timer = setTimeout(end("grace-over"), config.shutdownGraceMs)
      const onSignal = end("forced")
      process.once("SIGINT", onSignal)
      process.once("SIGTERM", onSignal)
      workers.addObserver(end("drained"))
      const how = yield* Deferred.await(ended)
      clearTimeout(timer)
      process.off("SIGINT", onSignal)
      process.off("SIGTERM", onSignal)
      if (how !== "drained") {
        yield* Effect.logWarning(
          `${how === "forced" ? "stopping now" : "grace period over"}: interrupting requests in flight`
        )
        yield* Fiber.interrupt(workers)
      }
    })
    const exit = yield* Fiber.await(workers).pipe(Effect.onInterrupt(() => drain))
    if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) yield* Effect.failCause(exit.cause)
    return totals satisfies WorkerSummary
  }).pipe(Effect.scoped)

/** What the stages of `pipeline` are given, besides the SQL client the caller provides. */
export const stageServices = (
  pipeline: CompiledPipeline,
  options: { readonly once: boolean; readonly observer?: Observer }
) =>
  Layer.mergeAll(
    // Built in this order, closed in the reverse: the results still being written land while the leases
    // are still renewed and the queue's statements still go out.
    Recorder.layer.pipe(
      Layer.provideMerge(
        Leases.layer.pipe(
          Layer.provideMerge(
            Layer.merge(
              Layer.unwrapEffect(Effect.map(WorkerConfig, (config) => Queue.layerFor(config.workerCount))),
              Wakeups.layer
            )
          )
        )
      )
    ),
    EventLog.layer(options.observer),
    Lifecycle.layer(options),
    AgentSettings.layer(pipeline.agent, pipeline.dir),
    Layer.succeed(PipelineLocation, { file: pipeline.file, dir: pipeline.dir })
  )
