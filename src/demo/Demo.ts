/**
 * `stageline demo`: the whole path on real parts, in one command. The embedded PostgreSQL, the migrations,
 * a throw-away git repository, the code-review-bot pipeline, one request inserted with plain SQL, and a
 * worker that takes it through every stage with the real Claude Code CLI, printing each stage as it runs
 * and then the result row.
 *
 * With `ANTHROPIC_API_KEY` or `ANTHROPIC_AUTH_TOKEN` set the agent talks to the real API. Without, the
 * model behind the CLI is a local scripted stand-in, and the demo says so: everything else is real.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { Console, Data, Effect, Layer, Logger, LogLevel } from "effect"
import { BuiltinStages } from "../../stages/index.js"
import * as Progress from "../cli/Progress.js"
import { WorkerConfig } from "../config/WorkerConfig.js"
import * as Database from "../db/Database.js"
import { migrate } from "../db/Migrator.js"
import { inPackage } from "../fs/PackageRoot.js"
import * as ScriptedModel from "../model/ScriptedModel.js"
import { load } from "../pipeline/Compiler.js"
import type { RunEvent } from "../pipeline/RunObserver.js"
import { StageRegistry } from "../pipeline/StageRegistry.js"
import * as Worker from "../worker/Worker.js"
import { demoScript } from "./demoScript.js"
import { sampleRepo } from "./SampleRepo.js"

export class DemoFailed extends Data.TaggedError("DemoFailed")<{ readonly message: string }> {}

const examplePipeline = inPackage("examples", "code-review-bot", "pipeline.yaml")

const prompt =
  "Review this repository for security problems. Write your findings to REVIEW.md and commit it on the current branch."

/** The run's events as a live line per request, the agent's steps printed above it. */
const printer = (view: Progress.ProgressView) => ({
  onEvent: (event: RunEvent) => {
    switch (event._tag) {
      case "Claimed":
        return view.onEvent({ requestId: event.requestId, attempt: event.attempt, kind: "claimed", stage: "claim" })
      case "StageStarted":
        return view.onEvent({ ...event, kind: "stage-started" })
      case "StageFinished":
        return view.onEvent({ ...event, kind: "stage-finished" })
      case "AgentEvent":
        return view.note(`    ${event.stage}: ${event.summary}`)
    }
  }
})

/** Where the model is: the real API when credentials are set, else the scripted stand-in (scoped). */
const modelEndpoint = Effect.gen(function* () {
  if (process.env.ANTHROPIC_API_KEY || process.env.ANTHROPIC_AUTH_TOKEN) {
    yield* Console.log("Model: the real Anthropic API (ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN is set).\n")
    return
  }
  const server = yield* ScriptedModel.start(demoScript)
  // The worker's allow-list passes these on to the agent.
  Object.assign(process.env, {
    ANTHROPIC_BASE_URL: server.url,
    ANTHROPIC_AUTH_TOKEN: "scripted-demo-token",
    CLAUDE_CODE_MAX_RETRIES: "0",
    DISABLE_TELEMETRY: "1",
    DISABLE_AUTOUPDATER: "1",
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1"
  })
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      delete process.env.ANTHROPIC_BASE_URL
      delete process.env.ANTHROPIC_AUTH_TOKEN
    })
  )
  yield* Console.log(
    [
      "Model: SCRIPTED. Neither ANTHROPIC_API_KEY nor ANTHROPIC_AUTH_TOKEN is set, so the model's replies come",
      `from a local stand-in for the Anthropic API at ${server.url} that follows a fixed script.`,
      "The Claude Code CLI, its tool calls, git, PostgreSQL and stageline are all real.",
      "Set ANTHROPIC_API_KEY to run the same demo against the real model.",
      ""
    ].join("\n")
  )
})

interface ResultRow {
  readonly status: string
  readonly error: string | null
  readonly commit_sha: string | null
  readonly branch_name: string | null
  readonly duration_ms: number
  readonly model: string | null
  readonly num_turns: number | null
  readonly cost_usd: string | null
  readonly session_id: string | null
  readonly result: string | null
  readonly commits: unknown
}

/** The demo prints its own progress; the worker's info logs would only repeat it (LOG_LEVEL still wins). */
const quietUnlessAsked = process.env.LOG_LEVEL ? Layer.empty : Logger.minimumLogLevel(LogLevel.Warning)

export const demo = Effect.scoped(
  Effect.gen(function* () {
    yield* Console.log("stageline demo: one request from a plain SQL INSERT to a result row.\n")
    yield* modelEndpoint
    const repo = yield* sampleRepo
    const scratch = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "stageline-demo-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )

    const pipeline = yield* load(examplePipeline).pipe(
      Effect.provide(BuiltinStages.pipe(Layer.provideMerge(StageRegistry.layer)))
    )
    // A config dir of its own, so the demo never touches an installed variant's skills.
    const demoPipeline = { ...pipeline, agent: { ...pipeline.agent, config_dir: path.join(scratch, "agent-config") } }
    yield* Console.log(`Pipeline: ${path.relative(process.cwd(), examplePipeline)}`)
    yield* Console.log(`Repository: ${repo.url} (a throw-away sample with one planted SQL injection)\n`)

    yield* Effect.gen(function* () {
      yield* migrate()
      const sql = yield* SqlClient.SqlClient
      yield* Console.log(
        `SQL> INSERT INTO orchestration_requests (repo_url, prompt) VALUES ('${repo.url}', '${prompt.slice(0, 40)}…');`
      )
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
        VALUES (${repo.url}, ${prompt}) RETURNING id`
      const id = row!.id
      yield* Console.log("\nThe worker takes it through the pipeline:")
      const view = Progress.make({ lastStage: demoPipeline.stages.at(-1)!.id })
      yield* view.ticking
      yield* Worker.run(demoPipeline).pipe(
        Effect.provide(Worker.stageServices(demoPipeline, { once: true, observer: printer(view) }))
      )

      const [result] =
        yield* sql<ResultRow>`SELECT status, error, commit_sha, branch_name, duration_ms, model, num_turns,
          cost_usd::text AS cost_usd, session_id, output->'result'->>'result' AS result, output->'git'->'commits' AS commits
        FROM orchestration_results WHERE request_id = ${id}`
      if (!result) return yield* new DemoFailed({ message: `no result was recorded for ${id}` })
      yield* Console.log(
        [
          "",
          "SQL> SELECT * FROM orchestration_results WHERE request_id = …;",
          `  status       ${result.status}`,
          `  error        ${result.error ?? "—"}`,
          `  commit_sha   ${result.commit_sha ?? "—"}  (${result.branch_name ?? "no branch"})`,
          `  commits      ${JSON.stringify(result.commits)}`,
          `  duration_ms  ${result.duration_ms}`,
          `  model        ${result.model ?? "—"}    turns ${result.num_turns ?? "—"}    cost_usd ${result.cost_usd ?? "—"}`,
          `  session_id   ${result.session_id ?? "—"}`,
          `  result       ${result.result ?? "—"}`,
          ""
        ].join("\n")
      )
      if (result.status !== "success") {
        return yield* new DemoFailed({ message: `the request ended as ${result.status}: ${result.error}` })
      }
      yield* Console.log(
        "Done. Run your own: npm run stageline -- run --pipeline examples/code-review-bot/pipeline.yaml"
      )
    }).pipe(
      Effect.provide(
        Layer.mergeAll(
          Database.clientLayer.pipe(Layer.provideMerge(Database.embeddedUrlLayer("stageline_demo"))),
          WorkerConfig.layer({ workspaceBase: path.join(scratch, "workspaces"), workerCount: 1 })
        )
      )
    )
  })
).pipe(Effect.provide(quietUnlessAsked))
