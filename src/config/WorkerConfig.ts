/**
 * The worker's settings: from the environment, the pipeline file and the defaults (see `resolve` for the
 * order). The variable names are the seed worker's, so a deployment that configured it keeps its meaning
 * here; the `STAGELINE_*` ones are new.
 */
import * as os from "node:os"
import * as path from "node:path"
import { Config, Context, Effect, Layer, Option } from "effect"
import { defaultBaseDir } from "../db/EmbeddedPostgres.js"

export interface WorkerSettings {
  /** Requests processed at once in this process (`WORKER_COUNT`, default 1). */
  readonly workerCount: number
  /** How often an idle worker looks for work when no notification came (`POLL_INTERVAL_MS`, default 5000). */
  readonly pollIntervalMs: number
  /** Default limit on one agent run (`MCLAUDE_TIMEOUT_MS`, default 30 minutes); a request may set its own. */
  readonly agentTimeoutMs: number
  /** Remove a request's workspace when it ends (`CLEANUP_AFTER_COMPLETE`, default true). */
  readonly cleanupAfterComplete: boolean
  /** Where workspaces are made (`WORKSPACE_BASE`; default `<data dir>/workspaces`, `/workspace` in the images). */
  readonly workspaceBase: string
  /** Passed to the agent as `CLAUDE_CODE_AGENT_TYPE` when set. */
  readonly agentType: Option.Option<string>
  /** Passed to the agent as `CLAUDE_CODE_AGENT_ID`; defaults to the worker's id. */
  readonly agentId: Option.Option<string>
  /** Passed to the agent as `CLAUDE_CODE_TEAM_MODE` when set. */
  readonly teamMode: Option.Option<string>
  /** This process's name in `claimed_by` (`STAGELINE_WORKER_ID`, default `<hostname>-<pid>`). */
  readonly workerName: string
  /** How long in-flight requests may run on after SIGTERM before they are interrupted (`STAGELINE_SHUTDOWN_GRACE_MS`). */
  readonly shutdownGraceMs: number
  /** How long a claim holds without renewal (`STAGELINE_LEASE_MS`, default 60 s); renewed every third of it. */
  readonly leaseMs: number
  /** Attempts a request gets unless its own `max_attempts` says otherwise (`STAGELINE_MAX_ATTEMPTS`, default 3). */
  readonly maxAttempts: number
  /** Which failed attempts are tried again: `timeout`, `crash`, `error` (`STAGELINE_RETRY_ON`, default timeout,crash). */
  readonly retryOn: ReadonlyArray<RetryClass>
  /** The wait before the second attempt, doubled for each one after (`STAGELINE_RETRY_BACKOFF_MS`, default 10 s). */
  readonly retryBackoffMs: number
  /**
   * The port of the worker's HTTP server: health, readiness, metrics and the dashboard
   * (`STAGELINE_HTTP_PORT`; unset or 0: no server; the container images set 8080).
   */
  readonly httpPort: number
  /** The address that server listens on (`STAGELINE_HTTP_HOST`, default 0.0.0.0). */
  readonly httpHost: string
}

/** How a failed attempt failed, for deciding whether to try again. A bad request is never retried. */
export type RetryClass = "timeout" | "crash" | "error"

/** The defaults, where neither the environment nor the pipeline file says otherwise. */
export const defaults = {
  workerCount: 1,
  pollIntervalMs: 5_000,
  agentTimeoutMs: 30 * 60 * 1000,
  cleanupAfterComplete: true,
  workspaceBase: path.join(defaultBaseDir(), "workspaces"),
  shutdownGraceMs: 60_000,
  leaseMs: 60_000,
  maxAttempts: 3,
  retryOn: ["timeout", "crash"] as ReadonlyArray<RetryClass>,
  retryBackoffMs: 10_000
} as const

/** The settings a pipeline file may give (its `queue`, `workspace` and `agent.timeout`). */
export type FileSettings = Partial<
  Pick<
    WorkerSettings,
    | "workerCount"
    | "pollIntervalMs"
    | "agentTimeoutMs"
    | "cleanupAfterComplete"
    | "workspaceBase"
    | "shutdownGraceMs"
    | "leaseMs"
    | "maxAttempts"
    | "retryOn"
    | "retryBackoffMs"
  >
>

const atLeast = (name: string, min: number) => (config: Config.Config<number>) =>
  config.pipe(Config.validate({ message: `${name} must be at least ${min}`, validation: (n) => n >= min }))

/** The environment's word on each setting, where it has one. */
const fromEnv = Config.all({
  workerCount: Config.option(Config.integer("WORKER_COUNT").pipe(atLeast("WORKER_COUNT", 1))),
  pollIntervalMs: Config.option(Config.integer("POLL_INTERVAL_MS").pipe(atLeast("POLL_INTERVAL_MS", 10))),
  agentTimeoutMs: Config.option(Config.integer("MCLAUDE_TIMEOUT_MS").pipe(atLeast("MCLAUDE_TIMEOUT_MS", 1))),
  cleanupAfterComplete: Config.option(Config.boolean("CLEANUP_AFTER_COMPLETE")),
  workspaceBase: Config.option(Config.nonEmptyString("WORKSPACE_BASE")),
  leaseMs: Config.option(Config.integer("STAGELINE_LEASE_MS").pipe(atLeast("STAGELINE_LEASE_MS", 300))),
  maxAttempts: Config.option(Config.integer("STAGELINE_MAX_ATTEMPTS").pipe(atLeast("STAGELINE_MAX_ATTEMPTS", 1))),
  retryOn: Config.option(
    Config.array(Config.literal("timeout", "crash", "error")("STAGELINE_RETRY_ON")) as Config.Config<
      ReadonlyArray<RetryClass>
    >
  ),
  retryBackoffMs: Config.option(
    Config.integer("STAGELINE_RETRY_BACKOFF_MS").pipe(atLeast("STAGELINE_RETRY_BACKOFF_MS", 0))
  ),
  shutdownGraceMs: Config.option(
    Config.integer("STAGELINE_SHUTDOWN_GRACE_MS").pipe(atLeast("STAGELINE_SHUTDOWN_GRACE_MS", 0))
  ),
  agentType: Config.option(Config.nonEmptyString("CLAUDE_CODE_AGENT_TYPE")),
  agentId: Config.option(Config.nonEmptyString("CLAUDE_CODE_AGENT_ID")),
  teamMode: Config.option(Config.nonEmptyString("CLAUDE_CODE_TEAM_MODE")),
  workerName: Config.nonEmptyString("STAGELINE_WORKER_ID").pipe(Config.withDefault(`${os.hostname()}-${process.pid}`)),
  // Where a deployment listens is its own business, not the shared pipeline file's: environment only.
  httpPort: Config.integer("STAGELINE_HTTP_PORT").pipe(
    Config.validate({
      message: "STAGELINE_HTTP_PORT must be a port number (0 for no server)",
      validation: (n) => n >= 0 && n <= 65_535
    }),
    Config.withDefault(0)
  ),
  httpHost: Config.nonEmptyString("STAGELINE_HTTP_HOST").pipe(Config.withDefault("0.0.0.0"))
})

/**
 * The one precedence, for every setting: a request's own config (where it may set one: the agent's
 * timeout, model and limits), then the environment, then the pipeline file, then the default. The
 * environment wins over the file because the file is shared by every deployment of a pipeline and the
 * environment is the deployment's own.
 */
export const resolve = (file: FileSettings) =>
  Effect.map(fromEnv, (env): WorkerSettings => {
    const pick = <K extends keyof FileSettings>(key: K) =>
      Option.getOrElse(env[key] as Option.Option<NonNullable<FileSettings[K]>>, () => file[key] ?? defaults[key])
    return {
      workerCount: pick("workerCount"),
      pollIntervalMs: pick("pollIntervalMs"),
      agentTimeoutMs: pick("agentTimeoutMs"),
      cleanupAfterComplete: pick("cleanupAfterComplete"),
      workspaceBase: path.resolve(pick("workspaceBase")),
      shutdownGraceMs: pick("shutdownGraceMs"),
      leaseMs: pick("leaseMs"),
      maxAttempts: pick("maxAttempts"),
      retryOn: pick("retryOn"),
      retryBackoffMs: pick("retryBackoffMs"),
      agentType: env.agentType,
      agentId: env.agentId,
      teamMode: env.teamMode,
      workerName: env.workerName,
      httpPort: env.httpPort,
      httpHost: env.httpHost
    }
  })

export class WorkerConfig extends Context.Tag("stageline/WorkerConfig")<WorkerConfig, WorkerSettings>() {
  /** From the environment over the pipeline file's settings over the defaults. */
  static readonly layerFor = (file: FileSettings) => Layer.effect(WorkerConfig, resolve(file))

  static readonly layerFromEnv = WorkerConfig.layerFor({})

  /** For tests and the demo: the given settings over everything else. */
  static readonly layer = (overrides: Partial<WorkerSettings>) =>
    Layer.effect(
      WorkerConfig,
      Effect.map(resolve({}), (settings) => ({ ...settings, ...overrides }))
    )
}
