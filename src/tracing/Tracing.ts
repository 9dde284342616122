/**
 * OpenTelemetry traces through @effect/opentelemetry: Effect's spans (a request, its stages, their queries)
 * become OpenTelemetry spans. Exported over OTLP HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; the
 * exporter reads the standard variables itself (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_HEADERS`, …).
 * Without it no SDK is loaded and tracing is off: the engine's spans (see `withSpan` below) are not even
 * made, since a span nobody exports cost a no-op stage more than the stage itself.
 */
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, Effect, FiberRef, Layer, Option, type Tracer } from "effect"

export const serviceVersion = "0.1.0"

/** Effect's tracer over an OpenTelemetry SDK whose spans go to `processor`. */
export const layerWith = (processor: SpanProcessor, serviceName = "stageline") =>
  Layer.unwrapEffect(
    Effect.map(
      Effect.promise(() => import("@effect/opentelemetry/NodeSdk")),
      (NodeSdk) => NodeSdk.layer(() => ({ resource: { serviceName, serviceVersion }, spanProcessor: processor }))
    )
  )

export const layer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const endpoint = yield* Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if (Option.isNone(endpoint)) return Layer.setTracerEnabled(false)
    const serviceName = yield* Config.nonEmptyString("OTEL_SERVICE_NAME").pipe(Config.withDefault("stageline"))
    const { OTLPTraceExporter } = yield* Effect.promise(() => import("@opentelemetry/exporter-trace-otlp-http"))
    const { BatchSpanProcessor } = yield* Effect.promise(() => import("@opentelemetry/sdk-trace-base"))
    // Batched, and flushed when the layer is released (the SDK's shutdown), so a worker that exits sends
    // what it traced.
    return layerWith(new BatchSpanProcessor(new OTLPTraceExporter()), serviceName)
  })
)

/** Whether tracing is on here: spans made now go somewhere. */
export const isOn: Effect.Effect<boolean> = FiberRef.get(FiberRef.currentTracerEnabled)

/** `traced` while tracing is on, else `plain`: the engine's spans are made only when traces go somewhere. */
const whenTracing = <A, E, R>(traced: Effect.Effect<A, E, R>, plain: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(isOn, (on) => (on ? traced : plain))

/**
 * `Effect.withSpan`, only while tracing is on. Effect makes and provides a span even when its tracer is
 * off, which for the engine's own spans (a stage, a claim) was much of what a request cost.
 */
export const withSpan =
  (name: string, options?: Tracer.SpanOptions) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    whenTracing(Effect.withSpan(effect, name, options), effect)
