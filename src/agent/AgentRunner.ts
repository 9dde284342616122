/**
 * One headless agent run: `<agent> --print --output-format stream-json --verbose [--model M] -- <prompt>` in the workspace,
 * bounded in time and output, its whole process tree ended when it finishes, times out or is interrupted.
 */
import { Effect } from "effect"
import type { AgentOutcome } from "../pipeline/RunContext.js"
import { runSubprocess } from "../process/Subprocess.js"
import { toOutcome } from "./AgentResult.js"

export interface AgentInvocation {
  readonly command: string
  readonly prompt: string
  readonly model: string | null
  /** Flags from the pipeline (permission mode, tools, limits), placed before the prompt. */
  readonly flags: ReadonlyArray<string>
  /** `stream-json` reports the agent's progress line by line; the result line is the same as `json`'s. */
  readonly outputFormat: "json" | "stream-json"
  /** Called with each line the agent prints, as it prints it (stream-json). */
  readonly onLine?: ((line: string) => Effect.Effect<void>) | undefined
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  readonly timeoutMs: number
  /** Bytes kept of stdout and of stderr each. */
  readonly outputLimitBytes: number
  readonly killGraceMs: number
}

/** Linux refuses a single argument longer than this (MAX_ARG_STRLEN). */
export const maxPromptBytes = 128 * 1024

export const agentArgs = (inv: Pick<AgentInvocation, "prompt" | "model" | "flags" | "outputFormat">): Array<string> => [
  "--print",
  "--output-format",
  inv.outputFormat,
  // The CLI requires --verbose for stream-json in print mode.
  ...(inv.outputFormat === "stream-json" ? ["--verbose"] : []),
  ...(inv.model ? ["--model", inv.model] : []),
  ...inv.flags,
  // After `--`, so that no prompt is ever read as a flag and no list-taking flag (--allowedTools) swallows it.
  "--",
  inv.prompt
]

export const runAgent = (inv: AgentInvocation) =>
  Effect.gen(function* () {
    const started = Date.now()
    const process = yield* runSubprocess({
      command: inv.command,
      args: agentArgs(inv),
      cwd: inv.cwd,
      env: inv.env,
      outputLimitBytes: inv.outputLimitBytes,
      killGraceMs: inv.killGraceMs,
      timeoutMs: inv.timeoutMs,
      onStdoutLine: inv.onLine
    })
    return toOutcome({
      command: inv.command,
      process,
      timedOut: process.timedOut,
      timeoutMs: inv.timeoutMs,
      durationMs: Date.now() - started
    }) satisfies AgentOutcome
  }).pipe(Effect.withSpan("AgentRunner.run"))
