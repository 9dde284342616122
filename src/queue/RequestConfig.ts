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
  skill_overrides: Schema.optional(Schema.Unknown)
})
export type RequestConfig = typeof RequestConfig.Type

/** The request itself is wrong: retrying it cannot help. */
export class InvalidRequest extends Data.TaggedError("InvalidRequest")<{
  readonly field: string
  readonly message: string
}> {}

const decode = Schema.decodeUnknown(RequestConfig, { onExcessProperty: "error", errors: "all" })

export const decodeRequestConfig = (raw: unknown) =>
  raw === null || raw === undefined
    ? Effect.succeed<RequestConfig>({})
    : decode(raw).pipe(
        Effect.mapError(
          (error) =>
            new InvalidRequest({
              field: "config",
              message: `invalid request config: ${formatIssues(error, "config")}`
            })
        )
      )
