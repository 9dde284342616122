/**
 * execute-mclaude: runs the agent headless in the workspace on the request's prompt, and keeps what it
 * reported. The agent failing is an outcome, not a stage failure: its status (success, error, partial,
 * timeout) and reason travel in `agent`, and the stages after it still run (the agent may have committed
 * work before it failed).
 */
import { Effect, Option, Schema } from "effect"
import { inheritedEnv, metadataEnv } from "../src/agent/AgentEnvironment.js"
import { summariseStreamLine } from "../src/agent/AgentEvents.js"
import { maxPromptBytes, runAgent } from "../src/agent/AgentRunner.js"
import { AgentSettings, agentFlags, resolveCommand } from "../src/agent/AgentSettings.js"
import { variantBinary } from "../src/agent/CcMirrorVariant.js"
import { WorkerConfig } from "../src/config/WorkerConfig.js"
import { emit } from "../src/pipeline/RunObserver.js"
import * as Stage from "../src/pipeline/Stage.js"
import { decodeRequestConfig, InvalidRequest } from "../src/queue/RequestConfig.js"

export default Stage.make({
  name: "execute-mclaude",
  description: "Runs the agent with --print --output-format json in the workspace and parses its result.",
  options: Schema.Struct({
    output_limit_bytes: Schema.optionalWith(Schema.Int.pipe(Schema.between(1_024, 256 * 1024 * 1024)), {
      default: () => 8 * 1024 * 1024
    }).annotations({
      description: "Bytes of stdout and of stderr kept; the rest is dropped and the truncation noted."
    }),
    output_format: Schema.optionalWith(Schema.Literal("stream-json", "json"), {
      default: () => "stream-json" as const
    }).annotations({
      description:
        "stream-json (default) records the agent's progress in the events table as it runs; json prints only the result."
    }),
    kill_grace_ms: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 600_000)), {
      default: () => 3_000
    }).annotations({ description: "Time between SIGTERM and SIGKILL when the agent must be stopped." }),
    result_grace_ms: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 3_600_000)), {
      default: () => 30_000
    }).annotations({
      description:
        "How long the agent may keep running after printing its result; then it is ended and its result kept."
    })
  }),
  requires: ["request", "workspace"],
  provides: ["agent"],
  run: (options) => (input) =>
    Effect.gen(function* () {
      const settings = yield* AgentSettings
      const worker = yield* WorkerConfig
      const { request, workspace, run } = input
      const config = yield* decodeRequestConfig(request.config)

      const metadata = metadataEnv(request.metadata)
      if (metadata instanceof InvalidRequest) return yield* metadata
      if (request.prompt.trim() === "") {
        return yield* new InvalidRequest({ field: "prompt", message: "the prompt is empty" })
      }
      if (Buffer.byteLength(request.prompt) > maxPromptBytes) {
        return yield* new InvalidRequest({
          field: "prompt",
          message: `the prompt is ${Buffer.byteLength(request.prompt)} bytes; the limit is ${maxPromptBytes}`
        })
      }

      const base = inheritedEnv(process.env, settings.passEnv)
      const resolved = yield* resolveCommand(settings, base.PATH ?? "")
      const ownConfigDir = input.skill !== undefined && input.skill.configDir !== settings.configDir
      const command = ownConfigDir
        ? Option.getOrElse(yield* variantBinary(resolved, settings.configDir), () => resolved)
        : resolved
      // Later entries win: the pipeline's own variables over a request's metadata, the engine's over both.
      const env: Record<string, string> = {
        ...base,
        ...metadata,
        ...settings.env,
        // Claude Code refuses to bypass permissions as root unless told it runs in a sandbox.
        ...(Option.contains(settings.permissionMode, "bypassPermissions") && process.getuid?.() === 0
          ? { IS_SANDBOX: "1" }
          : {}),
        TMPDIR: workspace.tmpDir,
        CLAUDE_CODE_AGENT_ID: Option.getOrElse(worker.agentId, () => run.workerId),
        ...Option.match(worker.agentType, { onNone: () => ({}), onSome: (t) => ({ CLAUDE_CODE_AGENT_TYPE: t }) }),
        ...Option.match(worker.teamMode, { onNone: () => ({}), onSome: (t) => ({ CLAUDE_CODE_TEAM_MODE: t }) }),
        ...(input.skill ? { CLAUDE_CONFIG_DIR: input.skill.configDir } : {})
      }
      const timeoutMs =
        config.timeout_minutes === undefined ? worker.agentTimeoutMs : Math.round(config.timeout_minutes * 60_000)
      const model = config.model ?? Option.getOrNull(settings.model)

      yield* Effect.logInfo(`running ${command}${model ? ` (model ${model})` : ""}, limit ${timeoutMs} ms`)
      const agent = yield* runAgent({
        command,
        prompt: request.prompt,
        model,
        flags: agentFlags(settings, { maxTurns: config.max_turns, maxBudgetUsd: config.max_budget_usd }),
        outputFormat: options.output_format,
        onLine: (line) => {
          const event = summariseStreamLine(line)
          return event === null
            ? Effect.void
            : emit({
                _tag: "AgentEvent",
                requestId: request.id,
                attempt: request.attempts,
                stage: run.currentStage ?? "execute-mclaude",
                summary: event.summary,
                data: event.data
              })
        },
        cwd: workspace.dir,
        env,
        timeoutMs,
        outputLimitBytes: options.output_limit_bytes,
        killGraceMs: options.kill_grace_ms,
        resultGraceMs: options.result_grace_ms
      })
      yield* Effect.logInfo(
        `agent finished: ${agent.status} in ${agent.durationMs} ms${agent.error ? ` (${agent.error})` : ""}`
      )
      return { agent }
    })
})
