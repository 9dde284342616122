/**
 * run-summary: a plugin stage, and the template to copy for your own.
 *
 * It writes a Markdown summary of the run (what was asked, how each stage went, what the agent did and
 * committed, what failed) into the run context, where `record` stores it in the result's
 * `output.extra.summary`. If the request's metadata carries a webhook URL under the key named by
 * `webhook_metadata_key`, it also POSTs the summary there as JSON; a failing webhook is reported in the
 * summary and never fails the request.
 *
 * It is written exactly like the built-in stages in stages/: a value made with Stage.make, with an
 * options Schema, the context keys it requires and provides, and a run function returning an Effect.
 */
import { Effect, Schema } from "effect"
import { Stage } from "stageline/pipeline"

export interface RunSummary {
  readonly markdown: string
  /** What happened to the webhook, if one was named. */
  readonly webhook: { readonly url: string; readonly status: number | null; readonly error: string | null } | null
}

// The summary becomes part of the typed run context, for any later stage to read.
declare module "stageline/pipeline" {
  interface RunContext {
    readonly summary: RunSummary
  }
}

const firstLine = (text: string, max = 120) => {
  const line = text.split("\n")[0]?.trim() ?? ""
  return line.length > max ? `${line.slice(0, max)}…` : line
}

const postJson = (url: string, body: unknown, timeoutMs: number) =>
  Effect.tryPromise({
    try: (signal) =>
      fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
      }).then((response) => response.status),
    catch: (error) => (error instanceof Error ? error.message : String(error))
  })

export default Stage.make({
  name: "run-summary",
  description: "Writes a Markdown summary of the run into the result, and optionally posts it to a webhook.",
  options: Schema.Struct({
    title: Schema.optionalWith(Schema.String, { default: () => "stageline run" }),
    webhook_metadata_key: Schema.optional(Schema.String).annotations({
      description: "The request metadata key holding a webhook URL to POST the summary to."
    }),
    webhook_timeout_ms: Schema.optionalWith(Schema.Int.pipe(Schema.between(100, 60_000)), { default: () => 5_000 })
  }),
  requires: ["request"],
  provides: ["summary"],
  // A summary of a failed run is the one most worth reading.
  runsAfterFailure: true,
  run: (options) => (input) =>
    Effect.gen(function* () {
      const { request, run, agent, git, failure } = input
      const lines = [
        `# ${options.title}`,
        "",
        `- **Request**: \`${request.id}\` (attempt ${request.attempts})`,
        `- **Asked**: ${firstLine(request.prompt)}`,
        ...(request.repo_url ? [`- **Repository**: ${request.repo_url} @ ${request.branch ?? "default branch"}`] : []),
        `- **Outcome**: ${failure ? `failed in ${failure.stage}: ${failure.message}` : (agent?.status ?? "no agent ran")}`,
        ...(agent
          ? [
              `- **Agent**: ${agent.status} in ${Math.round(agent.durationMs / 100) / 10} s` +
                `${agent.numTurns === null ? "" : `, ${agent.numTurns} turns`}` +
                `${agent.costUsd === null ? "" : `, $${agent.costUsd.toFixed(4)}`}`
            ]
          : []),
        ...(git?.prUrl ? [`- **Pull request**: ${git.prUrl}`] : []),
        "",
        "## Stages",
        "",
        "| stage | outcome | ms |",
        "| --- | --- | --- |",
        ...run.stages.map((s) => `| ${s.stage} | ${s.outcome}${s.reason ? ` (${s.reason})` : ""} | ${s.durationMs} |`),
        ...(git && git.commits.length > 0
          ? ["", "## Commits", "", ...git.commits.map((c) => `- \`${c.sha.slice(0, 12)}\` ${c.subject}`)]
          : []),
        ...(typeof agent?.result?.result === "string" ? ["", "## What the agent said", "", agent.result.result] : [])
      ]
      const markdown = `${lines.join("\n")}\n`

      const metadata = (request.metadata ?? {}) as Record<string, unknown>
      const target = options.webhook_metadata_key ? metadata[options.webhook_metadata_key] : undefined
      if (typeof target !== "string" || !/^https?:\/\//.test(target)) {
        return { summary: { markdown, webhook: null } }
      }
      const sent = yield* postJson(target, { request_id: request.id, markdown }, options.webhook_timeout_ms).pipe(
        Effect.either
      )
      if (sent._tag === "Left") yield* Effect.logWarning(`run-summary: webhook ${target} failed: ${sent.left}`)
      return {
        summary: {
          markdown,
          webhook:
            sent._tag === "Right"
              ? { url: target, status: sent.right, error: sent.right < 300 ? null : `HTTP ${sent.right}` }
              : { url: target, status: null, error: sent.left }
        }
      }
    })
})
