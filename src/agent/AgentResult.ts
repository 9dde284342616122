/**
 * Reading what the agent printed. `--output-format json` prints one result object; its exit code alone is
 * not to be trusted (an API error still says `subtype: "success"` with `is_error: true`, and a permission
 * denial exits 0), so the status is decided from `is_error`, `subtype` and `permission_denials` too.
 */
import type { AgentOutcome } from "../pipeline/RunContext.js"
import type { SubprocessResult } from "../process/Subprocess.js"

/** Whether a line of output is the agent's result object. */
export const isResultLine = (line: string): boolean => {
  const t = line.trim()
  if (!t.startsWith("{") || !t.includes('"result"')) return false
  try {
    const v = JSON.parse(t) as { type?: unknown }
    return typeof v === "object" && v !== null && v.type === "result"
  } catch {
    return false
  }
}

/** The result object in stdout: the last line that parses as `{ "type": "result", ... }`, else all of it. */
export const parseResultObject = (stdout: string): Record<string, unknown> | null => {
  const isResult = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v) && (v as { type?: unknown }).type === "result"
  const tryParse = (text: string): unknown => {
    try {
      return JSON.parse(text)
    } catch {
      return undefined
    }
  }
  const whole = tryParse(stdout.trim())
  if (isResult(whole)) return whole
  const lines = stdout.split("\n")
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim()
    if (!line.startsWith("{")) continue
    const parsed = tryParse(line)
    if (isResult(parsed)) return parsed
  }
  return null
}

const str = (v: unknown) => (typeof v === "string" && v !== "" ? v : null)
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null)

const modelOf = (result: Record<string, unknown>): string | null => {
  const usage = result.modelUsage
  if (usage && typeof usage === "object") {
    const models = Object.keys(usage)
    if (models.length > 0) return models.join(",")
  }
  return str(result.model)
}

const snippet = (text: string, max = 500) => {
  const t = text.trim()
  return t.length > max ? `${t.slice(0, max)}…` : t
}

/** The end of the output, where a failing program says why; stream-json puts its progress first. */
const lastLines = (text: string, max = 500) => {
  const t = text.trim()
  const lines = t.split("\n").filter((l) => !l.trimStart().startsWith("{"))
  const tail = (lines.length > 0 ? lines.join("\n") : t).trim()
  return tail.length > max ? `…${tail.slice(-max)}` : tail
}

export interface AgentRun {
  readonly command: string
  readonly process: SubprocessResult | null
  readonly timedOut: boolean
  readonly timeoutMs: number
  readonly durationMs: number
}

/** The status an agent's result object and exit code say. */
const fromResult = (
  result: Record<string, unknown>,
  exitCode: number | null
): Pick<AgentOutcome, "status" | "error"> => {
  const subtype = str(result.subtype)
  const message = str(result.result) ?? subtype ?? "no message"
  if (subtype === "error_max_turns" || subtype === "error_max_budget_usd") {
    return { status: "partial", error: `the agent stopped early (${subtype}): ${snippet(message)}` }
  }
  if (result.is_error === true) return { status: "error", error: `the agent reported an error: ${snippet(message)}` }
  if (exitCode !== 0) return { status: "error", error: `the agent exited with code ${exitCode}: ${snippet(message)}` }
  if (subtype !== null && subtype !== "success") {
    return { status: "error", error: `the agent ended with ${subtype}: ${snippet(message)}` }
  }
  const denials = Array.isArray(result.permission_denials) ? result.permission_denials : []
  if (denials.length > 0) {
    const tools = denials.map((d) => str((d as { tool_name?: unknown })?.tool_name) ?? "a tool").join(", ")
    return { status: "partial", error: `the agent was denied permission ${denials.length} time(s): ${tools}` }
  }
  return { status: "success", error: null }
}

/** Maps a finished (or timed-out) agent process to the outcome the record stage stores. */
export const toOutcome = (run: AgentRun): AgentOutcome => {
  const p = run.process
  const stdout = p?.stdout.text ?? ""
  const stderr = p?.stderr.text ?? ""
  // When the output was cut, the result line (printed last) survives in lastLine.
  const result = run.timedOut ? null : (parseResultObject(stdout) ?? (p ? parseResultObject(p.stdout.lastLine) : null))
  const base = {
    command: run.command,
    exitCode: p?.exitCode ?? null,
    signal: p?.signal ?? null,
    timedOut: run.timedOut,
    durationMs: run.durationMs,
    stdout,
    stderr,
    stdoutTruncated: p?.stdout.truncated ?? false,
    stderrTruncated: p?.stderr.truncated ?? false,
    result,
    sessionId: result ? str(result.session_id) : null,
    model: result ? modelOf(result) : null,
    numTurns: result ? num(result.num_turns) : null,
    costUsd: result ? num(result.total_cost_usd) : null,
    usage: result?.usage ?? null
  }
  const decide = (): Pick<AgentOutcome, "status" | "error"> => {
    if (run.timedOut) {
      return { status: "timeout", error: `the agent did not finish within ${run.timeoutMs} ms and was stopped` }
    }
    if (p === null) return { status: "error", error: "the agent did not run" }
    if (p.signal !== null) return { status: "error", error: `the agent was killed by ${p.signal}` }
    // It printed its result and lingered: the result is what it had to say; the exit code never came.
    if (p.endedWhenDone && result !== null) return fromResult(result, 0)
    if (result === null) {
      const why = p.exitCode === 0 ? "exited 0" : `exited with code ${p.exitCode}`
      const detail = snippet(stderr) || lastLines(stdout) || "no output"
      return { status: "error", error: `the agent ${why} without a JSON result: ${detail}` }
    }
    return fromResult(result, p.exitCode)
  }
  return { ...base, ...decide() }
}
