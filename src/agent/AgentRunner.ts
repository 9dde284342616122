/**
 * One headless agent run: `<agent> --print --output-format stream-json --verbose [--model M] -- <prompt>` in the workspace,
 * bounded in time and output, its whole process tree ended when it finishes, times out or is interrupted.
 */
import { Deferred, Effect } from "effect"
import type { AgentOutcome } from "../pipeline/RunContext.js"
import { runSubprocess } from "../process/Subprocess.js"
import { isResultLine, toOutcome } from "./AgentResult.js"

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
  /** How long the agent may linger after printing its result before it is ended (and the result kept). */
  readonly resultGraceMs: number
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
    // A CLI that printed its result and then does not exit (a stray handle keeps it alive) has finished
    // its work: it gets a grace period, then it is ended and its result kept, not waited on until the timeout.
    const resultSeen = yield* Deferred.make<void>()
    const onLine = (line: string) =>
      Effect.zipRight(
        isResultLine(line) ? Deferred.succeed(resultSeen, undefined) : Effect.void,
        inv.onLine ? inv.onLine(line) : Effect.void
      )
    const process = yield* runSubprocess({
      command: inv.command,
      args: agentArgs(inv),
      cwd: inv.cwd,
      env: inv.env,
      outputLimitBytes: inv.outputLimitBytes,
      killGraceMs: inv.killGraceMs,
      timeoutMs: inv.timeoutMs,
      onStdoutLine: onLine,
      doneWhen: Deferred.await(resultSeen).pipe(Effect.zipRight(Effect.sleep(inv.resultGraceMs)))
    })
    return toOutcome({
      command: inv.command,
      process,
      timedOut: process.timedOut,
      timeoutMs: inv.timeoutMs,
      durationMs: Date.now() - started
    }) satisfies AgentOutcome
  }).pipe(Effect.withSpan("AgentRunner.run"))
