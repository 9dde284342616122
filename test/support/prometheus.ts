/** Reading Prometheus text format in tests: each sample as name, labels and value. */
export interface Sample {
  readonly name: string
  readonly labels: Record<string, string>
  readonly value: number
}

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export const parsePrometheus = (text: string): Array<Sample> =>
  text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const match = sampleLine.exec(line)
      if (!match) throw new Error(`not a Prometheus sample: ${line}`)
      const labels: Record<string, string> = {}
      for (const [, key, value] of (match[2] ?? "").matchAll(labelPair)) labels[key!] = value!
      const raw = match[3]!
      return { name: match[1]!, labels, value: raw === "+Inf" ? Number.POSITIVE_INFINITY : Number(raw) }
    })

/** The sum of the samples named `name` whose labels include `labels`. */
export const sumOf = (samples: ReadonlyArray<Sample>, name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0)
