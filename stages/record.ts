/**
 * record: writes the attempt's `orchestration_results` row and the request's final status in one
 * transaction. It runs whatever happened before it, so every claimed request ends with a result.
 *
 * The status: a failed stage decides it (`timeout` for a stage timeout, `error` otherwise); else the
 * agent's own outcome; else, with no agent stage in the pipeline, `success`.
 */
import { Effect, Schema } from "effect"
import type { ResultStatus, StageInput } from "../src/pipeline/RunContext.js"
import * as Stage from "../src/pipeline/Stage.js"
import { Queue } from "../src/queue/Queue.js"

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
      const queue = yield* Queue
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
        stages: run.stages,
        // What plugin stages added to the run context, under their own keys.
        extra: extraKeys(input)
      }
      const outcome = yield* queue.record({
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
      })
      if (outcome === "not-owner") {
        yield* Effect.logWarning(
          `request ${request.id} is no longer held by ${run.workerId} (released or taken over); its result was not written`
        )
      } else {
        yield* Effect.logInfo(`recorded ${status} for request ${request.id} in ${durationMs} ms`)
      }
      return {}
    })
})
