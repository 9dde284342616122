/**
 * The span of one request's attempt: the root of its trace, with one child per stage. The claim stage's
 * child starts at the row's `claimed_at` (the database's clock, kept within the run's own start and now):
 * the wait for work before it belongs to no request, so it is not traced at all.
 */
import { Clock, Context, Effect, Exit, Option } from "effect"
import type { StageFailure } from "../pipeline/RunContext.js"
import type { ClaimedRequest } from "../queue/Request.js"

export interface RequestSpanInfo {
  readonly request: ClaimedRequest
  readonly workerId: string
  readonly pipeline: string
  /** The claim stage's id in the pipeline. */
  readonly claimStage: string
  /** When the claiming fiber began to look for work (ms since the epoch). */
  readonly waitStartedAt: number
  /** What the claim does once it has the request (announcing it), traced as part of the claim. */
  readonly afterClaim: Effect.Effect<void>
  /** Whether tracing is on, as the run found it when it began (see Tracing.isOn). */
  readonly tracing: boolean
}

const nanos = (ms: number) => BigInt(Math.round(ms)) * 1_000_000n

const clamp = (value: bigint, low: bigint, high: bigint) => (value < low ? low : value > high ? high : value)

/** Runs the rest of the request under its span, after the claim as the span's first child. */
export const around =
  (info: RequestSpanInfo) =>
  <E, R>(effect: Effect.Effect<StageFailure | null, E, R>): Effect.Effect<StageFailure | null, E, R> =>
    // Tracing off: no span, nothing to parent.
    info.tracing ? traced(info, effect) : Effect.zipRight(info.afterClaim, effect)

const traced = <E, R>(info: RequestSpanInfo, effect: Effect.Effect<StageFailure | null, E, R>) =>
  Effect.gen(function* () {
    const tracer = yield* Effect.tracer
    const now = yield* Clock.currentTimeNanos
    const { request } = info
    const claimedAt = clamp(
      request.claimed_at === null ? now : nanos(request.claimed_at.getTime()),
      nanos(info.waitStartedAt),
      now
    )
    const span = tracer.span("request", Option.none(), Context.empty(), [], claimedAt, "consumer", { root: true })
    span.attribute("stageline.request_id", request.id)
    span.attribute("stageline.attempt", request.attempts)
    span.attribute("stageline.worker_id", info.workerId)
    span.attribute("stageline.pipeline", info.pipeline)
    const claimSpan = tracer.span(
      `stage ${info.claimStage}`,
      Option.some(span),
      Context.empty(),
      [],
      claimedAt,
      "internal"
    )
    claimSpan.attribute("stageline.stage", info.claimStage)
    claimSpan.attribute("stageline.outcome", "ok")
    yield* info.afterClaim.pipe(Effect.withParentSpan(claimSpan))
    claimSpan.end(yield* Clock.currentTimeNanos, Exit.void)
    return yield* effect.pipe(
      Effect.withParentSpan(span),
      Effect.tap((failure) =>
        Effect.sync(() => {
          if (failure === null) return
          span.attribute("stageline.failed_stage", failure.stage)
          span.attribute("stageline.failure", failure.message)
        })
      ),
      Effect.onExit((exit) => Effect.flatMap(Clock.currentTimeNanos, (end) => Effect.sync(() => span.end(end, exit))))
    )
  })
