/**
 * The worker's settings, read from the environment. The names are the seed worker's, so a deployment that
 * configured it keeps its meaning here; the `STAGELINE_*` ones are new.
 */
import * as os from "node:os"
import * as path from "node:path"
import { Config, Context, Effect, Layer, type Option } from "effect"
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
}

export class WorkerConfig extends Context.Tag("stageline/WorkerConfig")<WorkerConfig, WorkerSettings>() {
  static readonly config: Config.Config<WorkerSettings> = Config.all({
    workerCount: Config.integer("WORKER_COUNT").pipe(
      Config.validate({ message: "WORKER_COUNT must be at least 1", validation: (n) => n >= 1 }),
      Config.withDefault(1)
    ),
    pollIntervalMs: Config.integer("POLL_INTERVAL_MS").pipe(
      Config.validate({ message: "POLL_INTERVAL_MS must be at least 10", validation: (n) => n >= 10 }),
      Config.withDefault(5_000)
    ),
    agentTimeoutMs: Config.integer("MCLAUDE_TIMEOUT_MS").pipe(
      Config.validate({ message: "MCLAUDE_TIMEOUT_MS must be positive", validation: (n) => n > 0 }),
      Config.withDefault(30 * 60 * 1000)
    ),
    cleanupAfterComplete: Config.boolean("CLEANUP_AFTER_COMPLETE").pipe(Config.withDefault(true)),
    workspaceBase: Config.string("WORKSPACE_BASE").pipe(
      Config.withDefault(path.join(defaultBaseDir(), "workspaces")),
      Config.map((dir) => path.resolve(dir))
    ),
    agentType: Config.option(Config.nonEmptyString("CLAUDE_CODE_AGENT_TYPE")),
    agentId: Config.option(Config.nonEmptyString("CLAUDE_CODE_AGENT_ID")),
    teamMode: Config.option(Config.nonEmptyString("CLAUDE_CODE_TEAM_MODE")),
    workerName: Config.nonEmptyString("STAGELINE_WORKER_ID").pipe(
      Config.withDefault(`${os.hostname()}-${process.pid}`)
    ),
    shutdownGraceMs: Config.integer("STAGELINE_SHUTDOWN_GRACE_MS").pipe(
      Config.validate({ message: "STAGELINE_SHUTDOWN_GRACE_MS must be >= 0", validation: (n) => n >= 0 }),
      Config.withDefault(60_000)
    )
  })

  static readonly layerFromEnv = Layer.effect(WorkerConfig, WorkerConfig.config)

  static readonly layer = (overrides: Partial<WorkerSettings>) =>
    Layer.effect(
      WorkerConfig,
      Effect.map(WorkerConfig.config, (settings) => ({ ...settings, ...overrides }))
    )
}
