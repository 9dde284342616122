/**
 * The agent a pipeline drives: which executable, which config dir (where cc-mirror keeps the variant's
 * skills), which default model. Read from the pipeline file's `agent:` section.
 */
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { Context, Data, Effect, Layer, Option } from "effect"
import type { AgentSection } from "../pipeline/PipelineFile.js"
import { which } from "../process/Subprocess.js"

export interface AgentSettingsValue {
  /** The configured command, if the pipeline names one; otherwise it is looked up (see resolveCommand). */
  readonly command: Option.Option<string>
  readonly variant: string
  readonly configDir: string
  readonly model: Option.Option<string>
  readonly permissionMode: Option.Option<string>
  readonly allowedTools: ReadonlyArray<string>
  readonly disallowedTools: ReadonlyArray<string>
  /** Limits a request may lower or raise with its own config. */
  readonly maxTurns: Option.Option<number>
  readonly maxBudgetUsd: Option.Option<number>
  readonly appendSystemPrompt: Option.Option<string>
  /** A file path (absolute) or inline JSON. */
  readonly mcpConfig: Option.Option<string>
  readonly env: Readonly<Record<string, string>>
  /** Worker variables passed on besides the built-in allow-list. */
  readonly passEnv: ReadonlyArray<string>
}

export class AgentNotFound extends Data.TaggedError("AgentNotFound")<{
  readonly looked: ReadonlyArray<string>
  readonly message: string
}> {}

export class AgentSettings extends Context.Tag("stageline/AgentSettings")<AgentSettings, AgentSettingsValue>() {
  static readonly fromSection = (section: AgentSection, baseDir: string): AgentSettingsValue => ({
    command: Option.fromNullable(section.command).pipe(
      // A command written as a relative path is relative to the pipeline file, like every path in it.
      Option.map((c) => (c.includes("/") ? path.resolve(baseDir, c) : c))
    ),
    variant: section.variant,
    configDir: section.config_dir
      ? path.resolve(baseDir, expandHome(section.config_dir))
      : path.join(os.homedir(), ".cc-mirror", section.variant, "config"),
    model: Option.fromNullable(section.model),
    permissionMode: Option.fromNullable(section.permission_mode),
    allowedTools: section.allowed_tools ?? [],
    disallowedTools: section.disallowed_tools ?? [],
    maxTurns: Option.fromNullable(section.max_turns),
    maxBudgetUsd: Option.fromNullable(section.max_budget_usd),
    appendSystemPrompt: Option.fromNullable(section.append_system_prompt),
    mcpConfig: Option.fromNullable(section.mcp_config).pipe(
      Option.map((c) => (c.trimStart().startsWith("{") ? c : path.resolve(baseDir, expandHome(c))))
    ),
    env: section.env ?? {},
    passEnv: section.pass_env ?? []
  })

  static readonly layer = (section: AgentSection, baseDir: string) =>
    Layer.succeed(AgentSettings, AgentSettings.fromSection(section, baseDir))
}

/** The CLI flags for these settings, with a request's own limits where it sets them. */
export const agentFlags = (
  settings: AgentSettingsValue,
  request: { readonly maxTurns?: number | undefined; readonly maxBudgetUsd?: number | undefined } = {}
): Array<string> => {
  const maxTurns = request.maxTurns ?? Option.getOrUndefined(settings.maxTurns)
  const maxBudget = request.maxBudgetUsd ?? Option.getOrUndefined(settings.maxBudgetUsd)
  const opt = (flag: string, value: Option.Option<string>) =>
    Option.match(value, { onNone: () => [], onSome: (v) => [flag, v] })
  return [
    ...opt("--permission-mode", settings.permissionMode),
    ...(settings.allowedTools.length > 0 ? ["--allowedTools", ...settings.allowedTools] : []),
    ...(settings.disallowedTools.length > 0 ? ["--disallowedTools", ...settings.disallowedTools] : []),
    ...(maxTurns === undefined ? [] : ["--max-turns", String(maxTurns)]),
    ...(maxBudget === undefined ? [] : ["--max-budget-usd", String(maxBudget)]),
    ...opt("--append-system-prompt", settings.appendSystemPrompt),
    ...opt("--mcp-config", settings.mcpConfig)
  ]
}

const expandHome = (p: string) => (p === "~" || p.startsWith("~/") ? path.join(os.homedir(), p.slice(1)) : p)

/** The Claude Code binary installed with npm next to stageline, if any. */
const installedClaudeCode = (): Option.Option<string> => {
  try {
    const require = createRequire(import.meta.url)
    const pkg = require.resolve("@anthropic-ai/claude-code/package.json")
    const bin = (require(pkg) as { bin?: Record<string, string> }).bin?.claude
    return bin ? which(path.join(path.dirname(pkg), bin)) : Option.none()
  } catch {
    return Option.none()
  }
}

/**
 * The executable to run: the pipeline's command; else `mclaude` on PATH, else `claude`, else the npm-installed
 * Claude Code. When nothing is found the error says what was looked for and how to install mclaude.
 */
export const resolveCommand = (settings: AgentSettingsValue, pathVariable: string) =>
  Effect.suspend(() => {
    if (Option.isSome(settings.command)) {
      const configured = settings.command.value
      return Option.match(which(configured, pathVariable), {
        onSome: Effect.succeed,
        onNone: () =>
          Effect.fail(
            new AgentNotFound({
              looked: [configured],
              message: `the agent command "${configured}" (agent.command in the pipeline) is not ${
                configured.includes("/") ? "an executable file" : "on PATH"
              }`
            })
          )
      })
    }
    const found = which("mclaude", pathVariable).pipe(
      Option.orElse(() => which("claude", pathVariable)),
      Option.orElse(installedClaudeCode)
    )
    return Option.match(found, {
      onSome: Effect.succeed,
      onNone: () =>
        Effect.fail(
          new AgentNotFound({
            looked: ["mclaude", "claude", "@anthropic-ai/claude-code"],
            message:
              "no agent found: looked for mclaude and claude on PATH and for an installed @anthropic-ai/claude-code. " +
              "Install the mclaude variant with `npx cc-mirror quick --provider mirror --name mclaude`, " +
              "or set agent.command in the pipeline file"
          })
        )
    })
  })
