import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, MetricBoundaries } from "effect"
import { render } from "../../src/metrics/PrometheusText.js"

/** Renders only the metrics whose names start with `prefix` (the registry is the process's). */
const renderOnly = (prefix: string) =>
  Effect.map(Metric.snapshot, (pairs) => render(pairs.filter((p) => p.metricKey.name.startsWith(prefix))))

describe("the Prometheus text renderer", () => {
  it.effect("writes HELP and TYPE once per name, escapes label values, and ends histograms with +Inf", () =>
    Effect.gen(function* () {
      const counter = Metric.counter("render_test_total", { description: "a \\ help\nline", incremental: true })
      yield* Metric.incrementBy(Metric.tagged(counter, "path", 'a "quoted"\\back\nslash'), 2)
      yield* Metric.increment(Metric.tagged(counter, "path", "plain"))
      const histogram = Metric.histogram("render_test_seconds", MetricBoundaries.fromIterable([0.1, 1]), "durations")
      for (const v of [0.05, 0.5, 5]) yield* Metric.update(histogram, v)
      yield* Metric.set(Metric.gauge("render_test_gauge"), 1.5)
      expect(yield* renderOnly("render_test_")).toBe(
        [
          "# TYPE render_test_gauge gauge",
          "render_test_gauge 1.5",
          "# HELP render_test_seconds durations",
          "# TYPE render_test_seconds histogram",
          'render_test_seconds_bucket{le="0.1"} 1',
          'render_test_seconds_bucket{le="1"} 2',
          'render_test_seconds_bucket{le="+Inf"} 3',
          "render_test_seconds_sum 5.55",
          "render_test_seconds_count 3",
          "# HELP render_test_total a \\\\ help\\nline",
          "# TYPE render_test_total counter",
          'render_test_total{path="a \\"quoted\\"\\\\back\\nslash"} 2',
          'render_test_total{path="plain"} 1',
          ""
        ].join("\n")
      )
    })
  )
})
