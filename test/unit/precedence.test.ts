import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Option } from "effect"
import { RegistryLive } from "../../src/cli/Cli.js"
import { defaults, resolve } from "../../src/config/WorkerConfig.js"
import { compile } from "../../src/pipeline/Compiler.js"

const withEnv = (env: Record<string, string>) =>
  Effect.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

const pipelineWith = (sections: string) =>
  compile("/srv/pipelines/p.yaml", `name: p\n${sections}\nstages:\n  - claim\n  - record\n`).pipe(
    Effect.provide(RegistryLive)
  )

describe("where a setting comes from: environment over pipeline file over default", () => {
  it.effect("uses the defaults when neither says anything", () =>
    Effect.gen(function* () {
      const settings = yield* resolve({}).pipe(withEnv({}))
      expect(settings).toMatchObject({
        workerCount: defaults.workerCount,
        pollIntervalMs: 5_000,
        agentTimeoutMs: 1_800_000,
        cleanupAfterComplete: true,
        shutdownGraceMs: 60_000
      })
    })
  )

  it.effect("takes the pipeline file's settings over the defaults, paths relative to the file", () =>
    Effect.gen(function* () {
      const pipeline = yield* pipelineWith(
        "queue:\n  concurrency: 4\n  poll_interval: 2s\n  shutdown_grace: 30s\nworkspace:\n  base: ./ws\n  cleanup: false\nagent:\n  timeout: 10m"
      )
      const settings = yield* resolve(pipeline.settings).pipe(withEnv({}))
      expect(settings).toMatchObject({
        workerCount: 4,
        pollIntervalMs: 2_000,
        shutdownGraceMs: 30_000,
        workspaceBase: "/srv/pipelines/ws",
        cleanupAfterComplete: false,
        agentTimeoutMs: 600_000
      })
    })
  )

  it.effect("lets the seed's environment variables win over the pipeline file", () =>
    Effect.gen(function* () {
      const pipeline = yield* pipelineWith(
        "queue:\n  concurrency: 4\n  poll_interval: 2s\nworkspace:\n  base: ./ws\n  cleanup: false\nagent:\n  timeout: 10m"
      )
      const settings = yield* resolve(pipeline.settings).pipe(
        withEnv({
          WORKER_COUNT: "8",
          POLL_INTERVAL_MS: "250",
          MCLAUDE_TIMEOUT_MS: "1000",
          CLEANUP_AFTER_COMPLETE: "true",
          WORKSPACE_BASE: "/workspace",
          CLAUDE_CODE_AGENT_TYPE: "worker",
          CLAUDE_CODE_AGENT_ID: "agent-7",
          CLAUDE_CODE_TEAM_MODE: "1"
        })
      )
      expect(settings).toMatchObject({
        workerCount: 8,
        pollIntervalMs: 250,
        agentTimeoutMs: 1_000,
        cleanupAfterComplete: true,
        workspaceBase: "/workspace"
      })
      expect(Option.getOrNull(settings.agentType)).toBe("worker")
      expect(Option.getOrNull(settings.agentId)).toBe("agent-7")
      expect(Option.getOrNull(settings.teamMode)).toBe("1")
    })
  )

  it.effect("refuses a bad environment value with its name", () =>
    Effect.gen(function* () {
      const error = yield* resolve({}).pipe(withEnv({ WORKER_COUNT: "0" }), Effect.flip)
      expect(String(error)).toContain("WORKER_COUNT must be at least 1")
    })
  )
})
