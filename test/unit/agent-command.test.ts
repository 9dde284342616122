import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { AgentSettings, type AgentSettingsValue, resolveCommand } from "../../src/agent/AgentSettings.js"
import { tempDir } from "../support/harness.js"

const executable = (dir: string, name: string) => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, "#!/bin/sh\n")
  fs.chmodSync(file, 0o755)
  return file
}

const settings = (command?: string): AgentSettingsValue =>
  AgentSettings.fromSection({ variant: "mclaude", ...(command ? { command } : {}) }, "/pipelines")

describe("finding the agent to run", () => {
  it.effect("prefers mclaude on PATH, then claude, then the npm-installed Claude Code", () =>
    Effect.gen(function* () {
      const first = tempDir("bin")
      const second = tempDir("bin")
      const claude = executable(second, "claude")
      expect(yield* resolveCommand(settings(), `${first}:${second}`)).toBe(claude)
      const mclaude = executable(second, "mclaude")
      expect(yield* resolveCommand(settings(), `${first}:${second}`)).toBe(mclaude)
      // Neither on PATH: the @anthropic-ai/claude-code installed next to stageline.
      const installed = yield* resolveCommand(settings(), tempDir("empty"))
      expect(installed).toMatch(/@anthropic-ai\/claude-code\/bin\/claude(\.exe)?$/)
    })
  )

  it.effect("uses the pipeline's command, and says so when it is missing", () =>
    Effect.gen(function* () {
      const dir = tempDir("bin")
      const mine = executable(dir, "my-agent")
      expect(yield* resolveCommand(settings("my-agent"), dir)).toBe(mine)
      const relative = AgentSettings.fromSection({ variant: "mclaude", command: "./tools/agent" }, "/pipelines")
      expect(Option.getOrNull(relative.command)).toBe("/pipelines/tools/agent")
      const missing = yield* resolveCommand(settings("no-such-agent"), dir).pipe(Effect.flip)
      expect(missing.message).toBe('the agent command "no-such-agent" (agent.command in the pipeline) is not on PATH')
    })
  )
})
