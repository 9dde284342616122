/**
 * Effect's metric snapshot in the Prometheus text exposition format (version 0.0.4). A renderer of our
 * own rather than an OpenTelemetry Prometheus exporter: that one serves on a port of its own, and the
 * snapshot already holds everything a scrape needs.
 */
import { Effect, Metric, type MetricKey, MetricState } from "effect"
import type * as MetricPair from "effect/MetricPair"

export const contentType = "text/plain; version=0.0.4; charset=utf-8"

const escapeLabel = (value: string) => value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")
const escapeHelp = (value: string) => value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n")

const number = (n: number) =>
  n === Number.POSITIVE_INFINITY ? "+Inf" : n === Number.NEGATIVE_INFINITY ? "-Inf" : String(n)

const labels = (pairs: ReadonlyArray<readonly [string, string]>) =>
  pairs.length === 0 ? "" : `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`

const tagsOf = (key: MetricKey.MetricKey.Untyped) => key.tags.map((t) => [t.key, t.value] as const)

const typeOf = (state: unknown): "counter" | "gauge" | "histogram" | null =>
  MetricState.isCounterState(state)
    ? "counter"
    : MetricState.isGaugeState(state)
      ? "gauge"
      : MetricState.isHistogramState(state)
        ? "histogram"
        : null

const samples = (name: string, pair: MetricPair.MetricPair.Untyped): Array<string> => {
  const tags = tagsOf(pair.metricKey)
  const state = pair.metricState
  if (MetricState.isCounterState(state) || MetricState.isGaugeState(state)) {
    const value = "count" in state ? state.count : state.value
    return [`${name}${labels(tags)} ${number(Number(value))}`]
  }
  if (MetricState.isHistogramState(state)) {
    const lines = state.buckets
      .filter(([bound]) => bound !== Number.POSITIVE_INFINITY)
      .map(([bound, count]) => `${name}_bucket${labels([...tags, ["le", number(bound)]])} ${count}`)
    lines.push(`${name}_bucket${labels([...tags, ["le", "+Inf"]])} ${state.count}`)
    lines.push(`${name}_sum${labels(tags)} ${number(state.sum)}`)
    lines.push(`${name}_count${labels(tags)} ${state.count}`)
    return lines
  }
  return []
}

/** Renders the given metrics, one HELP and TYPE per name, the series of each name together. */
export const render = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const byName = new Map<string, Array<MetricPair.MetricPair.Untyped>>()
  for (const pair of pairs) {
    if (typeOf(pair.metricState) === null) continue
    const list = byName.get(pair.metricKey.name) ?? []
    list.push(pair)
    byName.set(pair.metricKey.name, list)
  }
  const out: Array<string> = []
  for (const name of [...byName.keys()].sort()) {
    const list = byName.get(name)!
    const first = list[0]!
    const help = first.metricKey.description
    if (help._tag === "Some") out.push(`# HELP ${name} ${escapeHelp(help.value)}`)
    out.push(`# TYPE ${name} ${typeOf(first.metricState)}`)
    const series = list.map((pair) => ({ key: labels(tagsOf(pair.metricKey)), pair }))
    series.sort((a, b) => a.key.localeCompare(b.key))
    for (const { pair } of series) out.push(...samples(name, pair))
  }
  return `${out.join("\n")}\n`
}

/** Every metric of the process, rendered. */
export const scrape = Effect.map(Metric.snapshot, render)
