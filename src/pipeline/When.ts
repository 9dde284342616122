/**
 * Evaluating a stage's `when`: a lookup and a comparison on the run context, nothing more. Nothing in a
 * pipeline file is ever executed.
 */
import type { When } from "./PipelineFile.js"

/** The value at a dotted path, or undefined where any step of it is missing. */
export const lookup = (context: Record<string, unknown>, path: string): unknown => {
  let value: unknown = context
  for (const part of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined
    value = (value as Record<string, unknown>)[part]
  }
  return value
}

const present = (v: unknown) => v !== undefined && v !== null

export const holds = (when: When, context: Record<string, unknown>): boolean => {
  if ("exists" in when) return present(lookup(context, when.exists))
  if ("missing" in when) return !present(lookup(context, when.missing))
  if ("equals" in when) {
    const v = lookup(context, when.equals.path)
    return when.equals.value === null ? !present(v) : v === when.equals.value
  }
  const v = lookup(context, when.not_equals.path)
  return when.not_equals.value === null ? present(v) : v !== when.not_equals.value
}

export const describeWhen = (when: When): string =>
  "exists" in when
    ? `${when.exists} exists`
    : "missing" in when
      ? `${when.missing} is missing`
      : "equals" in when
        ? `${when.equals.path} = ${JSON.stringify(when.equals.value)}`
        : `${when.not_equals.path} != ${JSON.stringify(when.not_equals.value)}`
