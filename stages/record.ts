/**
 * record: writes the attempt's `orchestration_results` row and the request's final status in one
 * transaction. It runs whatever happened before it, so every claimed request ends with a result.
 *
 * The status: a failed stage decides it (`timeout` for a stage timeout, `cancelled` for a cancel, `error`
 * otherwise); else the agent's own outcome; else, with no agent stage in the pipeline, `success`.
 *
 * A failed attempt goes back to pending for another try when its kind is in `retry_on` (a timeout, a
 * crash, any error) and it has attempts left; a bad request and a cancelled one never do.
 *
 * As the pipeline's last stage, after the built-in claim, it claims the worker's next request in the same
 * statement (RunInfo.claimFollows): one round trip and one commit a request. Not while the worker drains.
 * Then nothing after it needs the row, so it hands the row to be written behind the run and returns at
 * once (Recorder.writeBehind): the request stays this worker's, its lease kept, until the row lands, and
 * the worker's next claim waits for the statement that brings its next request. With a stage after it,
 * it waits until the row is durable.
 *
 * A database that is briefly unreachable (a restart, a failover) does not lose the outcome: the write is
 * tried again for as long as the lease lasts (see Recorder).
 */
import { Effect, Schema } from "effect"
import { type RetryClass, WorkerConfig } from "../src/config/WorkerConfig.js"
import type { ResultStatus, StageInput } from "../src/pipeline/RunContext.js"
import * as Stage from "../src/pipeline/Stage.js"
import { Recorder } from "../src/queue/Recorder.js"
import { Lifecycle } from "../src/worker/Lifecycle.js"

const statusOf = (input: StageInput<"request">): { status: ResultStatus; error: string | null } => {
  const failure = input.failure
  if (failure) {
    // Crashes and timeouts already say which stage (and plugin) they were.
    const named = failure.message.startsWith(`stage "${failure.stage}"`)
    const plugin = failure.origin.startsWith("plugin ") ? ` (${failure.origin})` : ""
    return {
      status: failure.status,
      error: named ? failure.message : `stage "${failure.stage}"${plugin} failed: ${failure.message}`
    }
  }
  if (input.agent) return { status: input.agent.status, error: input.agent.error }
  return { status: "success", error: null }
}

/** The kind of a failed attempt, for `retry_on`; null when it must never be retried. */
export const retryClassOf = (input: StageInput<"request">, status: ResultStatus): RetryClass | null => {
  if (status === "success" || status === "partial" || status === "cancelled") return null
  if (input.failure?.tag === "InvalidRequest") return null
  if (status === "timeout") return "timeout"
  // Killed by a signal (the OOM killer, a crash), or the worker lost it: not the request's fault.
  if (input.agent?.signal || input.failure?.tag === "LeaseLost") return "crash"
  return "error"
}

const builtinKeys = new Set(["run", "request", "workspace", "skill", "agent", "git", "failure"])

const extraKeys = (input: object): Record<string, unknown> | null => {
  const extra = Object.fromEntries(Object.entries(input).filter(([key]) => !builtinKeys.has(key)))
  return Object.keys(extra).length > 0 ? extra : null
}

export default Stage.make({
  name: "record",
  description: "Writes the result row and the request's final status in one transaction; runs after failures too.",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: [],
  runsAfterFailure: true,
  run: () => (input) =>
    Effect.gen(function* () {
      const recorder = yield* Recorder
      const worker = yield* WorkerConfig
      const { request, agent, git, workspace, skill, run } = input
      const { status, error } = statusOf(input)
      const durationMs = Math.max(1, Date.now() - run.startedAt)
      const output = {
        // The seed's users read output->>'stdout'.
        stdout: agent?.stdout ?? "",
        stderr: agent?.stderr ?? "",
        exit_code: agent?.exitCode ?? null,
        signal: agent?.signal ?? null,
        stdout_truncated: agent?.stdoutTruncated ?? false,
        stderr_truncated: agent?.stderrTruncated ?? false,
        result: agent?.result ?? null,
        agent: agent ? { command: agent.command, status: agent.status, duration_ms: agent.durationMs } : null,
        git: git ?? null,
        workspace: workspace ? { dir: workspace.dir, repo_url: workspace.repoUrl, branch: workspace.branch } : null,
        skill: skill ? { skill: skill.skill, installed: skill.installed, domains: skill.domains } : null,
        failure: input.failure ?? null,
        // A copy: a row written behind the run is encoded after the run has added record's own report.
        stages: [...run.stages],
        // What plugin stages added to the run context, under their own keys.
        extra: extraKeys(input)
      }
      // The next claim rides on this statement when nothing but the claim follows (RunInfo.claimFollows).
      const next = run.claimFollows && !(yield* Lifecycle.isDraining) ? { leaseMs: worker.leaseMs } : undefined
      const result = {
        requestId: request.id,
        attempt: request.attempts,
        workerId: run.workerId,
        status,
        output,
        prUrl: git?.prUrl ?? null,
        commitSha: git?.headSha ?? null,
        branchName: git?.branch ?? null,
        durationMs,
        error,
        sessionId: agent?.sessionId ?? null,
        model: agent?.model ?? null,
        numTurns: agent?.numTurns ?? null,
        costUsd: agent?.costUsd ?? null,
        usage: agent?.usage ?? null
      }
      const kind = retryClassOf(input, status)
      const retry = {
        retryable: kind !== null && worker.retryOn.includes(kind),
        maxAttempts: worker.maxAttempts,
        backoffMs: worker.retryBackoffMs
      }
      if (run.claimFollows) yield* recorder.writeBehind({ result, retry, next })
      else yield* recorder.write({ result, retry, next })
      return {}
    })
})
