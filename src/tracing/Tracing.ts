/**
 * OpenTelemetry traces through @effect/opentelemetry: Effect's spans (a request, its stages, their queries)
 * become OpenTelemetry spans. Exported over OTLP HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; the
 * exporter reads the standard variables itself (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_HEADERS`, …).
 * Without it no SDK is loaded, and spans stay in memory at next to no cost.
 */
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, Effect, Layer, Option } from "effect"

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
    if (Option.isNone(endpoint)) return Layer.empty
    const serviceName = yield* Config.nonEmptyString("OTEL_SERVICE_NAME").pipe(Config.withDefault("stageline"))
    const { OTLPTraceExporter } = yield* Effect.promise(() => import("@opentelemetry/exporter-trace-otlp-http"))
    const { BatchSpanProcessor } = yield* Effect.promise(() => import("@opentelemetry/sdk-trace-base"))
    // Batched, and flushed when the layer is released (the SDK's shutdown), so a worker that exits sends
    // what it traced.
    return layerWith(new BatchSpanProcessor(new OTLPTraceExporter()), serviceName)
  })
)
