/**
 * Runs a compiled pipeline once: the first stage claims a request, the rest run in order over the growing
 * run context. A failing stage does not stop the run; it is noted in `failure`, later stages are skipped
 * unless they run after failures (record does), so the outcome is always recorded.
 *
 * All stages of one run share one Scope, closed when the run ends however it ends: what a stage opens for
 * the request (its workspace) lives until then; what it opens for itself it scopes itself.
 */
import { Data, Deferred, Duration, Effect, Either, Fiber, FiberRef, HashMap, identity, Runtime, Schedule } from "effect"
import * as Metrics from "../metrics/Metrics.js"
import type { ClaimedRequest } from "../queue/Request.js"
import * as RequestSpan from "../tracing/RequestSpan.js"
import * as Tracing from "../tracing/Tracing.js"
import { WorkerStopping } from "../worker/Lifecycle.js"
import type { CompiledPipeline, CompiledStage } from "./Compiler.js"
import { onAbort } from "./RunAbort.js"
import type { RunInfo, StageFailure, StageReport } from "./RunContext.js"
import { type Observer, RunObserver } from "./RunObserver.js"
import { builtinOrigin } from "./StageRegistry.js"
import { describeWhen, holds } from "./When.js"

/** A stage ran longer than its `timeout`. */
export class StageTimeout extends Data.TaggedError("StageTimeout")<{
  readonly stage: string
  readonly message: string
}> {}

/** A stage threw, died, or returned something other than what it promised. */
export class StageCrashed extends Data.TaggedError("StageCrashed")<{
  readonly stage: string
  readonly message: string
}> {}

/** The run was stopped from outside while this stage ran (see RunInfo.abort). */
class RunAborted extends Data.TaggedError("RunAborted")<{ readonly failure: StageFailure }> {}

export type RunOutcome =
  | { readonly _tag: "Processed"; readonly requestId: string; readonly failure: StageFailure | null }
  | { readonly _tag: "Stopped"; readonly reason: string }
  | { readonly _tag: "ClaimFailed"; readonly message: string }

/** Tags never retried whatever `retry_on` says: retrying a bad request cannot make it good. */
const neverRetried = new Set(["InvalidRequest", "WorkerStopping"])

const messageOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    return error.message
  }
  return String(error)
}

const tagOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
    ? error._tag
    : "UnknownError"

const schedule = (retry: NonNullable<CompiledStage["retry"]>) => {
  const { type, base, cap } = retry.backoff
  const delays: Schedule.Schedule<unknown> =
    type === "fixed"
      ? Schedule.spaced(Duration.millis(base))
      : Schedule.exponential(Duration.millis(base)).pipe(
          Schedule.modifyDelay((_, d) => Duration.min(d, Duration.millis(cap)))
        )
  return Schedule.intersect(delays, Schedule.recurs(retry.times))
}

/** `stage "x"`, and for a plugin's stage which plugin it came from. */
const named = (compiled: CompiledStage) =>
  compiled.origin.startsWith("plugin ") ? `stage "${compiled.id}" (${compiled.origin})` : `stage "${compiled.id}"`

/** The longest delay setTimeout takes as given (2^31 - 1 ms, about 24.8 days). */
const maxTimerMs = 2 ** 31 - 1

/**
 * Runs `effect` in a fiber of its own, so that its timeout or the run's abort can stop it while the run
 * goes on: one fiber, and plain callbacks for the ways the wait ends. (Effect's timeout and race fork two
 * fibers each, which for a stage that does little was most of what the stage cost.) Whatever ends the
 * wait, the fiber has ended, its finalizers run, before this returns.
 *
 * The fiber starts at once, on this fiber's stack, from inside the wait: a stage that finishes without
 * waiting on anything has its outcome before the wait would begin, with no timer set and no turn of the
 * scheduler to start it or to hear its end. Started inside the wait, the fiber is stopped by the wait's
 * interruption however early that comes, so it needs no parent to be interrupted with.
 */
const guarded = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: {
    readonly timeout: { readonly ms: number; readonly error: () => StageTimeout } | null
    readonly abort: RunInfo | null
  }
): Effect.Effect<A, E | StageTimeout | RunAborted, R> =>
  Effect.flatMap(Effect.runtime<R>(), (runtime) =>
    Effect.async<A, E | StageTimeout | RunAborted>((resume) => {
      /** Set once the stage's fiber has started: until then, a stop is kept for when it has. */
      let fiber: Fiber.RuntimeFiber<A, E> | undefined
      /** Why the stage was stopped while it was being started (it aborted its own run), if it was. */
      let stoppedWhileStarting: StageTimeout | RunAborted | undefined
      let settled = false
      let timer: ReturnType<typeof setTimeout> | undefined
      let stopListening = () => {}
      const settle = (outcome: Effect.Effect<A, E | StageTimeout | RunAborted>) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        stopListening()
        resume(outcome)
      }
      const stop = (error: StageTimeout | RunAborted) => {
        if (fiber === undefined) {
          stoppedWhileStarting ??= error
          return
        }
        settle(Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(error)))
      }
      // Heard first: a run aborted already does not start the stage (the listener is called at once).
      if (options.abort) stopListening = onAbort(options.abort, (failure) => stop(new RunAborted({ failure })))
      if (stoppedWhileStarting !== undefined) return settle(Effect.fail(stoppedWhileStarting))
      const startedAt = options.timeout ? performance.now() : 0
      fiber = Runtime.runFork(runtime)(effect)
      // The abort wins over the outcome, as it would have had the stage waited on anything.
      if (stoppedWhileStarting !== undefined) return stop(stoppedWhileStarting)
      const done = fiber.unsafePoll()
      if (done !== null) return settle(done)
      fiber.addObserver((exit) => settle(exit))
      if (options.timeout) {
        const { ms, error } = options.timeout
        // Node fires a longer timer at once; a timeout past 24 days is as good as none. What the stage did
        // before it first waited counts.
        if (ms <= maxTimerMs) timer = setTimeout(() => stop(error()), ms - (performance.now() - startedAt))
      }
      // The run itself is being interrupted (a shutdown): the stage goes with it.
      return Effect.suspend(() => {
        settled = true
        clearTimeout(timer)
        stopListening()
        return Fiber.interrupt(fiber)
      })
    })
  )

/**
 * The stage's attempts, each within the stage's timeout, retried as its `retry` says; stopped by the run's
 * abort unless the stage runs after failures (`abort` null then).
 */
const attemptStage = (
  compiled: CompiledStage,
  ctx: Record<string, unknown>,
  counter: { attempts: number },
  abort: RunInfo | null
) => {
  const { stage, id } = compiled
  const once = Effect.suspend(() => {
    counter.attempts++
    return stage.run(compiled.options)(ctx as never)
  }).pipe(
    Effect.catchAllDefect((defect) =>
      Effect.fail(new StageCrashed({ stage: id, message: `${named(compiled)} crashed: ${messageOf(defect)}` }))
    ),
    Effect.flatMap((output) => {
      const missing =
        typeof output === "object" && output !== null
          ? stage.provides.filter((k) => (output as Record<string, unknown>)[k] === undefined)
          : stage.provides
      return missing.length === 0
        ? Effect.succeed(output as Record<string, unknown>)
        : Effect.fail(
            new StageCrashed({
              stage: id,
              message: `${named(compiled)} promised ${missing.map((k) => `"${k}"`).join(", ")} but did not return ${
                missing.length === 1 ? "it" : "them"
              }`
            })
          )
    })
  )
  const timeout =
    compiled.timeoutMs === null
      ? null
      : {
          ms: compiled.timeoutMs,
          error: () =>
            new StageTimeout({
              stage: id,
              message: `${named(compiled)} did not finish within ${compiled.timeoutMs} ms`
            })
        }
  const retry = compiled.retry
  if (retry === null || retry.times === 0) {
    // One attempt: one guard for both its timeout and the abort (none at all when neither applies).
    return timeout === null && abort === null ? once : guarded(once, { timeout, abort })
  }
  const limited = timeout === null ? once : guarded(once, { timeout, abort: null })
  const attempts = Effect.retry(limited, {
    schedule: schedule(retry),
    while: (error) => {
      const tag = tagOf(error)
      return !neverRetried.has(tag) && (retry.retry_on === undefined || retry.retry_on.includes(tag))
    }
  })
  // The abort stops the backoff between attempts too.
  return abort === null ? attempts : guarded(attempts, { timeout: null, abort })
}

const fail = (error: unknown): RunOutcome =>
  error instanceof WorkerStopping
    ? { _tag: "Stopped", reason: error.message }
    : { _tag: "ClaimFailed", message: messageOf(error) }

/**
 * What every stage of a run uses, looked up once when the run begins rather than at each stage: the run's
 * log context, where its events go, and whether tracing is on (it is decided when the worker starts).
 */
interface RunEnv {
  readonly logs: LogContext
  readonly observer: Observer
  readonly tracing: boolean
  /** The pipeline's last stage, and whether its first is the built-in claim (see RunInfo.claimFollows). */
  readonly last: CompiledStage | undefined
  readonly claimsAgain: boolean
}

/** Runs one stage of a claimed request, recording in `ctx` what it provides or how it failed. */
const step = (compiled: CompiledStage, ctx: Record<string, unknown>, run: RunInfo, env: RunEnv) => {
  const { logs, observer, tracing } = env
  const stage = Effect.gen(function* () {
    // Every log line of the stage says which it is.
    yield* logs.at(compiled.id)
    const { id: requestId, attempts: attempt } = ctx.request as { id: string; attempts: number }
    // A cancel or a lost lease counts as the run's failure from the moment it happens.
    const aborted = yield* Deferred.poll(run.abort)
    if (aborted._tag === "Some" && ctx.failure === undefined) ctx.failure = yield* aborted.value
    const failure = ctx.failure as StageFailure | undefined
    const finished = (report: StageReport) =>
      Effect.suspend(() => {
        run.stages.push(report)
        return report.outcome === "skipped"
          ? Effect.void
          : Metrics.stageRan(report.stage, report.outcome, report.durationMs)
      }).pipe(
        tracing
          ? Effect.zipRight(
              Effect.annotateCurrentSpan({
                "stageline.outcome": report.outcome,
                "stageline.stage_attempts": report.attempts,
                ...(report.reason === undefined ? {} : { "stageline.reason": report.reason })
              })
            )
          : identity,
        Effect.zipRight(
          observer.onEvent({
            _tag: "StageFinished",
            requestId,
            attempt,
            stage: report.stage,
            outcome: report.outcome,
            durationMs: report.durationMs,
            reason: report.reason
          })
        )
      )
    const skip = (reason: string) =>
      finished({ stage: compiled.id, outcome: "skipped", durationMs: 0, attempts: 0, reason })
    if (failure && !compiled.runsAfterFailure) return yield* skip("an earlier stage failed")
    if (compiled.when && !holds(compiled.when, ctx))
      return yield* skip(`its condition (${describeWhen(compiled.when)}) is false`)
    const missing = compiled.stage.requires.filter((k) => ctx[k] === undefined)
    if (missing.length > 0) {
      const reason = `needs ${missing.map((k) => `"${k}"`).join(", ")}, which no earlier stage produced`
      yield* skip(reason)
      if (!failure) {
        ctx.failure = {
          stage: compiled.id,
          origin: compiled.origin,
          tag: "StageSkipped",
          message: reason,
          status: "error"
        }
      }
      return
    }
    yield* observer.onEvent({ _tag: "StageStarted", requestId, attempt, stage: compiled.id })
    run.currentStage = compiled.id
    run.claimFollows = env.claimsAgain && compiled === env.last
    const counter = { attempts: 0 }
    const started = Date.now()
    // Stages that run after failures run to the end; the others stop when the run is aborted.
    const result = yield* Effect.either(attemptStage(compiled, ctx, counter, compiled.runsAfterFailure ? null : run))
    const durationMs = Date.now() - started
    if (Either.isRight(result)) {
      Object.assign(ctx, result.right)
      return yield* finished({ stage: compiled.id, outcome: "ok", durationMs, attempts: counter.attempts })
    }
    const tag = tagOf(result.left)
    const stageFailure: StageFailure =
      result.left instanceof RunAborted
        ? result.left.failure
        : {
            stage: compiled.id,
            origin: compiled.origin,
            tag,
            message: messageOf(result.left),
            status: tag === "StageTimeout" ? "timeout" : "error"
          }
    yield* finished({
      stage: compiled.id,
      outcome: "failed",
      durationMs,
      attempts: counter.attempts,
      reason: stageFailure.message
    })
    yield* Effect.logWarning(
      `stage ${compiled.id} failed (${tag}) after ${counter.attempts} attempt(s) in ${durationMs} ms: ${stageFailure.message}`
    )
    // The first failure is the one the result reports; a later one (record itself) is logged only.
    if (!failure) ctx.failure = stageFailure
  })
  // The span is the request span's child, skipped or not. The stage's id says where it ran; a stack trace
  // per stage would only name the runner.
  return tracing
    ? Effect.withSpan(stage, `stage ${compiled.id}`, {
        attributes: { "stageline.stage": compiled.id },
        captureStackTrace: false
      })
    : stage
}

/**
 * The log annotations of a run (its worker, request, attempt and stage), set as the run moves on instead
 * of scoped around each part: `Effect.annotateLogs` saves and restores them every time, which for a stage
 * that does little cost more than the stage. `runOnce` puts back the annotations it found when it ends.
 */
interface LogContext {
  /** The request, once claimed, is named on every line set from then on. */
  readonly claimed: (request: ClaimedRequest) => void
  /** From now on, log lines also say this stage (and the request, once it is claimed). */
  readonly at: (stage: string) => Effect.Effect<void>
}

const logContext = (base: HashMap.HashMap<string, unknown>, workerId: string): LogContext => {
  let annotations = HashMap.set(base, "worker_id", workerId)
  return {
    claimed: (request: ClaimedRequest) => {
      annotations = HashMap.set(HashMap.set(annotations, "request_id", request.id), "attempt", request.attempts)
    },
    at: (stage: string) => FiberRef.set(FiberRef.currentLogAnnotations, HashMap.set(annotations, "stage", stage))
  }
}

/**
 * Claims one request and takes it through the pipeline. `Stopped` means the claim stage declined (the
 * worker is draining, or `--once` found the queue empty); `ClaimFailed` that claiming itself failed.
 */
export const runOnce = (pipeline: CompiledPipeline, workerId: string) =>
  Effect.flatMap(FiberRef.get(FiberRef.currentLogAnnotations), (base) =>
    Effect.scoped(runClaimed(pipeline, workerId, logContext(base, workerId))).pipe(
      Effect.ensuring(FiberRef.set(FiberRef.currentLogAnnotations, base))
    )
  )

const runClaimed = (pipeline: CompiledPipeline, workerId: string, logs: LogContext) =>
  Effect.gen(function* () {
    const run: RunInfo = {
      workerId,
      pipeline: pipeline.name,
      startedAt: Date.now(),
      stages: [],
      abort: yield* Deferred.make<StageFailure>(),
      currentStage: null,
      claimFollows: false
    }
    const ctx: Record<string, unknown> = { run }
    const [claim, ...rest] = pipeline.stages
    if (!claim) return { _tag: "Stopped", reason: "the pipeline has no stages" } satisfies RunOutcome

    const env: RunEnv = {
      logs,
      observer: yield* RunObserver,
      tracing: yield* Tracing.isOn,
      last: rest.at(-1),
      claimsAgain: claim.origin === builtinOrigin && claim.stage.name === "claim"
    }
    const counter = { attempts: 0 }
    // Waiting for work is not traced: each of an idle fiber's polls would be a trace of its own.
    yield* logs.at(claim.id)
    const claiming = Effect.either(attemptStage(claim, ctx, counter, null))
    const claimed = yield* env.tracing ? Effect.withTracerEnabled(claiming, false) : claiming
    if (Either.isLeft(claimed)) return fail(claimed.left)
    Object.assign(ctx, claimed.right)
    run.stages.push({
      stage: claim.id,
      outcome: "ok",
      durationMs: Date.now() - run.startedAt,
      attempts: counter.attempts
    })
    const request = ctx.request as ClaimedRequest
    logs.claimed(request)
    yield* logs.at(claim.id)
    yield* Metrics.claimed(request)
    // In flight until its stages are through; the clean-up after them (its workspace) is not counted.
    const throughStages = yield* Metrics.countInFlight(yield* Effect.scope)
    const failure = yield* Effect.gen(function* () {
      yield* Effect.logInfo(`claimed request ${request.id} (attempt ${request.attempts})`)
      yield* Effect.forEach(rest, (compiled) => step(compiled, ctx, run, env), { discard: true })
      throughStages()
      const failure = (ctx.failure as StageFailure | undefined) ?? null
      // Said as the last stage, which every step sets first, skipped or not (the claim, if it is the only one).
      yield* Effect.logInfo(
        `request ${request.id} ${failure ? `failed in stage ${failure.stage}` : "ran every stage"} in ${
          Date.now() - run.startedAt
        } ms`
      )
      return failure
    }).pipe(
      RequestSpan.around({
        request,
        workerId,
        pipeline: pipeline.name,
        claimStage: claim.id,
        waitStartedAt: run.startedAt,
        afterClaim: env.observer.onEvent({
          _tag: "Claimed",
          requestId: request.id,
          attempt: request.attempts,
          workerId
        }),
        tracing: env.tracing
      })
    )
    return { _tag: "Processed", requestId: request.id, failure } satisfies RunOutcome
  })
