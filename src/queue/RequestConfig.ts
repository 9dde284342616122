/**
 * The request's `config` column, as the seed documents it: `model`, `timeout_minutes`, `skill_overrides`.
 * Unknown keys are refused rather than ignored, so a typo fails loudly instead of silently running with
 * defaults.
 */
import { Data, Effect, Schema } from "effect"
import { formatIssues } from "../pipeline/SchemaIssues.js"

/** The longest a request may ask its agent to run: a day. */
export const maxTimeoutMinutes = 24 * 60

export const ModelName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._:[\]-]{0,127}$/, {
    message: () => "a model is an alias (haiku, sonnet, opus) or a model id of letters, digits and . _ : - [ ]"
  })
)

/** Caps on what one request may ask for. */
export const maxTurns = 500
export const maxBudgetUsd = 1_000

/** Why a domain file name is refused, or null: letters, digits, `.`, `_`, `-`, ending in `.md`; never a path. */
export const domainFileNameProblem = (name: string): string | null =>
  name.includes("/") || name.includes("\\") || name.includes("..")
    ? `"${name}" is a path; a domain file is named, not placed`
    : /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.md$/.test(name)
      ? null
      : `"${name}" is not a domain file name (letters, digits, . _ - ending in .md)`

/** What a request may add to the skill, for itself only (it runs on its own copy of the config dir). */
export const SkillOverrides = Schema.Struct({
  domains: Schema.optional(
    Schema.Array(
      Schema.String.pipe(
        Schema.pattern(/^[a-z0-9][a-z0-9-]{0,63}$/, { message: () => "a bundled domain is named like code-review" })
      )
    )
  ),
  files: Schema.optional(
    Schema.Record({
      key: Schema.String,
      value: Schema.String.pipe(Schema.maxLength(256 * 1024, { message: () => "a domain file is at most 256 KiB" }))
    }).pipe(
      Schema.filter((files) => {
        const problems = Object.keys(files)
          .map(domainFileNameProblem)
          .filter((p) => p !== null)
        return problems.length === 0 || problems.join("; ")
      })
    )
  )
})
export type SkillOverrides = typeof SkillOverrides.Type

export const RequestConfig = Schema.Struct({
  model: Schema.optional(ModelName),
  timeout_minutes: Schema.optional(
    Schema.Number.pipe(
      Schema.greaterThan(0, { message: () => "timeout_minutes must be greater than 0" }),
      Schema.lessThanOrEqualTo(maxTimeoutMinutes, {
        message: () => `timeout_minutes must be at most ${maxTimeoutMinutes}`
      })
    )
  ),
  max_turns: Schema.optional(
    Schema.Int.pipe(
      Schema.between(1, maxTurns, { message: () => `max_turns must be a whole number from 1 to ${maxTurns}` })
    )
  ),
  max_budget_usd: Schema.optional(
    Schema.Number.pipe(
      Schema.greaterThan(0, { message: () => "max_budget_usd must be greater than 0" }),
      Schema.lessThanOrEqualTo(maxBudgetUsd, { message: () => `max_budget_usd must be at most ${maxBudgetUsd}` })
    )
  ),
  skill_overrides: Schema.optional(SkillOverrides)
})
export type RequestConfig = typeof RequestConfig.Type

/** The request itself is wrong: retrying it cannot help. */
export class InvalidRequest extends Data.TaggedError("InvalidRequest")<{
  readonly field: string
  readonly message: string
}> {}

const decode = Schema.decodeUnknown(RequestConfig, { onExcessProperty: "error", errors: "all" })

/** No valid config is deeper than a few levels; a deeper one is refused before the decoder prints it whole. */
export const maxConfigDepth = 16

/** Whether `value` nests objects or arrays deeper than `max` levels (counted without recursion). */
export const nestedDeeperThan = (value: unknown, max: number): boolean => {
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (typeof v !== "object" || v === null) continue
    if (depth >= max) return true
    for (const child of Object.values(v)) stack.push([child, depth + 1])
  }
  return false
}

export const decodeRequestConfig = (raw: unknown) =>
  raw === null || raw === undefined
    ? Effect.succeed<RequestConfig>({})
    : nestedDeeperThan(raw, maxConfigDepth)
      ? Effect.fail(
          new InvalidRequest({
            field: "config",
            message: `invalid request config: nested more than ${maxConfigDepth} levels deep`
          })
        )
      : decode(raw).pipe(
          Effect.mapError(
            (error) =>
              new InvalidRequest({
                field: "config",
                message: `invalid request config: ${formatIssues(error, "config")}`
              })
          )
        )
