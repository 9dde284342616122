/**
 * The pipeline file's schema (YAML, or JSON, which is YAML too). Unknown keys are errors everywhere: a
 * misspelt field must never be silently ignored.
 */
import { Duration, ParseResult, Schema } from "effect"

/** `500ms`, `30s`, `5m`, `1h`, `1h30m`, or a number of milliseconds. */
export const DurationMs = Schema.transformOrFail(Schema.Union(Schema.Number, Schema.String), Schema.Number, {
  strict: true,
  decode: (input, _, ast) => {
    if (typeof input === "number") {
      return Number.isFinite(input) && input > 0
        ? ParseResult.succeed(input)
        : ParseResult.fail(new ParseResult.Type(ast, input, "a duration must be a positive number of milliseconds"))
    }
    const parts = [...input.trim().matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|m|h)/g)]
    const consumed = parts.map((p) => p[0]).join("")
    if (parts.length === 0 || consumed.replace(/\s/g, "") !== input.trim().replace(/\s/g, "")) {
      return ParseResult.fail(
        new ParseResult.Type(ast, input, `"${input}" is not a duration (write it like 500ms, 30s, 5m, 1h or 1h30m)`)
      )
    }
    const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const
    const ms = parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0)
    return ms > 0
      ? ParseResult.succeed(ms)
      : ParseResult.fail(new ParseResult.Type(ast, input, "a duration must be positive"))
  },
  encode: (ms) => ParseResult.succeed(Duration.format(Duration.millis(ms)))
}).annotations({ identifier: "Duration", description: "500ms, 30s, 5m, 1h, 1h30m, or milliseconds" })

export const Backoff = Schema.Struct({
  type: Schema.optionalWith(Schema.Literal("fixed", "exponential"), { default: () => "exponential" as const }),
  base: Schema.optionalWith(DurationMs, { default: () => 1_000 }),
  cap: Schema.optionalWith(DurationMs, { default: () => 60_000 })
}).annotations({ description: "Wait between attempts: fixed `base`, or `base` doubled each time up to `cap`." })

export const Retry = Schema.Struct({
  times: Schema.Int.pipe(Schema.between(0, 100)).annotations({ description: "Retries after the first attempt." }),
  backoff: Schema.optionalWith(Backoff, {
    default: () => ({ type: "exponential" as const, base: 1_000, cap: 60_000 })
  }),
  retry_on: Schema.optional(Schema.Array(Schema.String)).annotations({
    description: "Error tags that are retried; all are when omitted (timeouts included)."
  })
})
export type Retry = typeof Retry.Type

/** A dotted path into the run context: `git.prUrl`, `request.metadata.prNumber`. */
export const FieldPath = Schema.String.pipe(
  Schema.pattern(/^[a-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$/, {
    message: () => "a field path is a context key and its fields, joined by dots: git.prUrl"
  })
)

const Scalar = Schema.Union(Schema.String, Schema.Number, Schema.Boolean, Schema.Null)

/** When a stage runs: a small predicate on the run context, evaluated, never executed. */
export const When = Schema.Union(
  Schema.Struct({ exists: FieldPath }).annotations({ description: "Runs when the field is present (not null)." }),
  Schema.Struct({ missing: FieldPath }).annotations({ description: "Runs when the field is absent or null." }),
  Schema.Struct({ equals: Schema.Struct({ path: FieldPath, value: Scalar }) }).annotations({
    description: "Runs when the field equals the value."
  }),
  Schema.Struct({ not_equals: Schema.Struct({ path: FieldPath, value: Scalar }) }).annotations({
    description: "Runs when the field is absent or differs from the value."
  })
)
export type When = typeof When.Type

export const StageEntry = Schema.Struct({
  use: Schema.String.annotations({ description: "The stage's registered name." }),
  id: Schema.optional(Schema.String).annotations({
    description: "A name for this use of the stage, unique in the pipeline (defaults to `use`)."
  }),
  with: Schema.optional(Schema.Unknown).annotations({ description: "The stage's options." }),
  timeout: Schema.optional(DurationMs).annotations({ description: "Limit on each attempt of the stage." }),
  retry: Schema.optional(Retry),
  after_failure: Schema.optional(Schema.Boolean).annotations({
    description: "Run even when an earlier stage failed (record does by default)."
  }),
  when: Schema.optional(When)
})
export type StageEntry = typeof StageEntry.Type

/** The worker's own secrets stay with the worker whatever a pipeline asks. */
const PassedName = Schema.String.pipe(
  Schema.pattern(/^(?:[A-Za-z_][A-Za-z0-9_]*\*?|\*)$/, { message: () => "a variable name, or a prefix ending in *" }),
  Schema.filter((name) =>
    ["DATABASE_URL", "SSH_PRIVATE_KEY", "STAGELINE_"].some((kept) =>
      name.endsWith("*") ? kept.startsWith(name.slice(0, -1)) : name === kept || name.startsWith("STAGELINE_")
    )
      ? `${name} is the worker's own and is never passed to the agent`
      : undefined
  )
)

export const AgentSection = Schema.Struct({
  command: Schema.optional(Schema.String).annotations({
    description: "The agent executable: a name on PATH or a path (default: mclaude)."
  }),
  variant: Schema.optionalWith(Schema.String, { default: () => "mclaude" }).annotations({
    description: "The cc-mirror variant whose config dir holds the skills (default: mclaude)."
  }),
  config_dir: Schema.optional(Schema.String).annotations({
    description: "The agent's config dir (default: ~/.cc-mirror/<variant>/config)."
  }),
  model: Schema.optional(Schema.String).annotations({
    description: "Model when the request names none (default: the agent's own)."
  }),
  permission_mode: Schema.optional(
    Schema.Literal("default", "acceptEdits", "bypassPermissions", "plan", "dontAsk")
  ).annotations({
    description:
      "The agent's --permission-mode (default: the agent's own). bypassPermissions as root sets IS_SANDBOX=1."
  }),
  allowed_tools: Schema.optional(Schema.Array(Schema.String)).annotations({
    description: "Tools the agent may use without asking (--allowedTools)."
  }),
  disallowed_tools: Schema.optional(Schema.Array(Schema.String)).annotations({
    description: "Tools the agent may not use (--disallowedTools)."
  }),
  max_turns: Schema.optional(Schema.Int.pipe(Schema.positive())).annotations({ description: "--max-turns" }),
  max_budget_usd: Schema.optional(Schema.Number.pipe(Schema.positive())).annotations({
    description: "--max-budget-usd"
  }),
  append_system_prompt: Schema.optional(Schema.String).annotations({ description: "--append-system-prompt" }),
  mcp_config: Schema.optional(Schema.String).annotations({
    description: "--mcp-config: a file (relative to the pipeline file) or inline JSON."
  }),
  timeout: Schema.optional(DurationMs).annotations({
    description: "Limit on one agent run (default 30m; MCLAUDE_TIMEOUT_MS and a request's timeout_minutes win)."
  }),
  env: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })).annotations({
    description: "Variables set for the agent, over those it inherits (requests cannot override them)."
  }),
  pass_env: Schema.optional(Schema.Array(PassedName)).annotations({
    description:
      "Worker variables the agent inherits besides the built-in allow-list: names, or prefixes ending in * (SUPABASE_*)."
  })
})
export type AgentSection = typeof AgentSection.Type

export const QueueSection = Schema.Struct({
  concurrency: Schema.optional(Schema.Int.pipe(Schema.between(1, 1024))).annotations({
    description: "Requests processed at once per process (default 1; WORKER_COUNT wins)."
  }),
  poll_interval: Schema.optional(DurationMs.pipe(Schema.greaterThanOrEqualTo(10))).annotations({
    description: "Fallback poll when no notification arrives (default 5s; POLL_INTERVAL_MS wins)."
  }),
  lease: Schema.optional(DurationMs.pipe(Schema.greaterThanOrEqualTo(300))).annotations({
    description:
      "How long a claim holds without renewal; a dead worker's requests are re-queued once it runs out (default 60s; STAGELINE_LEASE_MS wins)."
  }),
  max_attempts: Schema.optional(Schema.Int.pipe(Schema.between(1, 100))).annotations({
    description:
      "Attempts per request unless the request's max_attempts column says otherwise (default 3; STAGELINE_MAX_ATTEMPTS wins)."
  }),
  retry_on: Schema.optional(Schema.Array(Schema.Literal("timeout", "crash", "error"))).annotations({
    description:
      "Which failed attempts are tried again (default [timeout, crash]; a bad request never is; STAGELINE_RETRY_ON wins)."
  }),
  retry_backoff: Schema.optional(DurationMs).annotations({
    description:
      "Wait before the second attempt, doubled for each one after (default 10s; STAGELINE_RETRY_BACKOFF_MS wins)."
  }),
  shutdown_grace: Schema.optional(DurationMs).annotations({
    description: "How long requests in flight may finish after SIGTERM (default 60s; STAGELINE_SHUTDOWN_GRACE_MS wins)."
  })
})
export type QueueSection = typeof QueueSection.Type

export const WorkspaceSection = Schema.Struct({
  base: Schema.optional(Schema.String).annotations({
    description:
      "Where workspaces are made, relative to the pipeline file (default <data dir>/workspaces; WORKSPACE_BASE wins)."
  }),
  cleanup: Schema.optional(Schema.Boolean).annotations({
    description: "Remove a workspace when its request ends (default true; CLEANUP_AFTER_COMPLETE wins)."
  })
})
export type WorkspaceSection = typeof WorkspaceSection.Type

export const PipelineFile = Schema.Struct({
  $schema: Schema.optional(Schema.String),
  plugins: Schema.optional(Schema.Array(Schema.String)).annotations({
    description: "Modules adding stages: paths relative to this file, or package names."
  }),
  queue: Schema.optionalWith(QueueSection, { default: () => ({}) }),
  workspace: Schema.optionalWith(WorkspaceSection, { default: () => ({}) }),
  name: Schema.String.pipe(
    Schema.pattern(/^[a-z0-9][a-z0-9-]*$/, { message: () => "use lower-case letters, digits and -" })
  ),
  agent: Schema.optionalWith(AgentSection, { default: () => ({ variant: "mclaude" }) }),
  stages: Schema.Array(Schema.Union(Schema.String, StageEntry)).pipe(Schema.minItems(1))
}).annotations({ identifier: "Pipeline", title: "stageline pipeline" })

/** The file with its stage entries left undecoded, so that each entry's problems are found on their own. */
export const PipelineShape = Schema.Struct({
  ...PipelineFile.fields,
  stages: Schema.Array(Schema.Unknown).pipe(Schema.minItems(1))
})

export const StageEntryOrName = Schema.Union(Schema.String, StageEntry)
export type PipelineFile = typeof PipelineFile.Type
