/**
 * The run context: the one record that flows through a pipeline, growing as each stage adds its fields.
 * Stages talk to each other only through it. A stage declares the keys it `requires` and the keys it
 * `provides`; the compiler checks at load time that every requirement is provided by an earlier stage.
 *
 * Plugins add their own keys by merging into this interface:
 *
 *     declare module "stageline/pipeline" { interface RunContext { readonly summary: string } }
 */
import type { Deferred } from "effect"
import type { ClaimedRequest } from "../queue/Request.js"

export interface Workspace {
  /** The agent's working directory. */
  readonly dir: string
  /** A private temporary directory for this run (the agent's `TMPDIR`). */
  readonly tmpDir: string
  readonly repoUrl: string | null
  readonly branch: string | null
  /** HEAD right after the clone: the base the agent's commits are counted from. */
  readonly baseSha: string | null
}

export interface SkillInstall {
  /** The agent's config dir (`CLAUDE_CONFIG_DIR`). */
  readonly configDir: string
  readonly skill: string
  readonly skillDir: string
  /** Whether the bundled skill was installed because none was there. */
  readonly installed: boolean
  /** Domain files written into `references/domains/`. */
  readonly domains: ReadonlyArray<string>
}

export type ResultStatus = "success" | "error" | "partial" | "timeout" | "cancelled"

export interface AgentOutcome {
  readonly status: Exclude<ResultStatus, "cancelled">
  /** Why the run is not a success; null when it is. */
  readonly error: string | null
  readonly command: string
  readonly exitCode: number | null
  readonly signal: string | null
  readonly timedOut: boolean
  readonly durationMs: number
  readonly stdout: string
  readonly stderr: string
  readonly stdoutTruncated: boolean
  readonly stderrTruncated: boolean
  /** The agent's JSON result object, when it printed one. */
  readonly result: Record<string, unknown> | null
  readonly sessionId: string | null
  readonly model: string | null
  readonly numTurns: number | null
  readonly costUsd: number | null
  readonly usage: unknown
}

export interface GitCommit {
  readonly sha: string
  readonly subject: string
}

export interface GitArtifacts {
  readonly headSha: string | null
  readonly branch: string | null
  /** Commits reachable from HEAD and not from the base: what the agent committed. */
  readonly commits: ReadonlyArray<GitCommit>
  /** `git diff --shortstat` of the base against HEAD. */
  readonly diffStat: { readonly filesChanged: number; readonly insertions: number; readonly deletions: number } | null
  /** Whether origin's copy of the branch (as this clone last saw it, after the agent's push) is at HEAD. */
  readonly pushed: boolean
  readonly prUrl: string | null
}

/** How an earlier stage failed; stages that run after a failure (record, clean-up) read it. */
export interface StageFailure {
  readonly stage: string
  /** Where the stage comes from ("stageline (built-in)", "plugin ./x.ts"). */
  readonly origin: string
  /** The error's `_tag`, which `retry.retry_on` matches. */
  readonly tag: string
  readonly message: string
  readonly status: "error" | "timeout" | "cancelled"
}

export interface StageReport {
  readonly stage: string
  readonly outcome: "ok" | "failed" | "skipped"
  readonly durationMs: number
  readonly attempts: number
  readonly reason?: string
}

/** What the engine itself keeps about the run. */
export interface RunInfo {
  readonly workerId: string
  readonly pipeline: string
  readonly startedAt: number
  /** Filled in as stages finish; complete by the time the last stage runs. */
  readonly stages: Array<StageReport>
  /**
   * Completed when the run must stop early: the request was cancelled, or its lease was lost. The stage
   * running is interrupted; only stages that run after failures (record) still run. Read it; to stop a
   * run, call `abortRun` (src/pipeline/RunAbort.ts), which also tells the stage running now.
   */
  readonly abort: Deferred.Deferred<StageFailure>
  /** The stage running now (the heartbeat reports it). */
  currentStage: string | null
  /**
   * True while the pipeline's last stage runs, when its first is the built-in claim: what this fiber does
   * next is claim, so `record` claims the next request in its own statement.
   */
  claimFollows: boolean
}

export interface RunContext {
  readonly run: RunInfo
  readonly request: ClaimedRequest
  readonly workspace: Workspace
  readonly skill: SkillInstall
  readonly agent: AgentOutcome
  readonly git: GitArtifacts
  readonly failure: StageFailure
}

export type ContextKey = keyof RunContext & string

/** What a stage sees: the keys it requires are there; anything else may be. */
export type StageInput<Requires extends ContextKey> = Pick<RunContext, Requires | "run"> &
  Partial<Omit<RunContext, Requires | "run">>

/** What a stage returns: exactly the keys it provides. */
export type StageOutput<Provides extends ContextKey> = Pick<RunContext, Provides>
