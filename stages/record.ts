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
 *
 * A database that is briefly unreachable (a restart, a failover) does not lose the outcome: the write is
 * tried again for as long as the lease lasts. It is safe to repeat: a write that landed but whose answer was
 * lost is found on the next try (`already-recorded`), and one that comes after another worker took the
 * request over changes nothing (`not-owner`).
 */
import { Duration, Effect, Schedule, Schema } from "effect"
import { type RetryClass, WorkerConfig } from "../src/config/WorkerConfig.js"
import type { ResultStatus, StageInput } from "../src/pipeline/RunContext.js"
import * as Stage from "../src/pipeline/Stage.js"
import { Queue } from "../src/queue/Queue.js"
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
      const queue = yield* Queue
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
        stages: run.stages,
        // What plugin stages added to the run context, under their own keys.
        extra: extraKeys(input)
      }
      const warn = (error: unknown) => Effect.logWarning("could not record the outcome; trying again", error)
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
      const outcome = yield* queue.record(result, retry, next).pipe(
        // Waits 200 ms, then 400, 800, … up to 5 s between tries, for as long as a lease from the first
        // failure. The schedule is built only once a write has failed: almost every write succeeds at once,
        // and building it cost more than the write's call.
        Effect.catchAll((error) => {
          const failedAt = Date.now()
          return warn(error).pipe(
            Effect.zipRight(Effect.sleep(Duration.millis(200))),
            Effect.zipRight(
              Effect.retry(
                // A write tried again claims nothing ahead: the next claim stage claims as usual.
                Effect.tapError(queue.record(result, retry), warn),
                Schedule.exponential(Duration.millis(400)).pipe(
                  Schedule.modifyDelay((_, d) => Duration.min(d, Duration.seconds(5))),
                  Schedule.check(() => Date.now() - failedAt < worker.leaseMs)
                )
              )
            )
          )
        })
      )
      if (outcome === "not-owner") {
        yield* Effect.logWarning(
          `request ${request.id} is no longer held by ${run.workerId} (released or taken over); its result was not written`
        )
      } else if (outcome === "retrying") {
        yield* Effect.logInfo(
          `recorded ${status} for attempt ${request.attempts} of request ${request.id}; it will be tried again`
        )
      } else {
        yield* Effect.logInfo(`recorded ${status} for request ${request.id} in ${durationMs} ms`)
      }
      return {}
    })
})
