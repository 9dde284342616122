/**
 * One line of the CLI's `stream-json` output, summarised for the events table: what the agent did, in a
 * sentence, and the few fields worth keeping. Message text is cut short; full output stays in stdout.
 */
const cut = (text: string, max = 160) => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length > max ? `${flat.slice(0, max)}…` : flat
}

const describeInput = (input: Record<string, unknown> | undefined): string => {
  if (!input) return ""
  for (const key of ["description", "command", "file_path", "path", "pattern", "url", "prompt"]) {
    const v = input[key]
    if (typeof v === "string" && v !== "") return cut(v, 120)
  }
  return ""
}

export interface AgentEventSummary {
  readonly summary: string
  readonly data: Record<string, unknown>
}

/** Null for lines that are not events worth a row (tool results, unknown shapes). */
export const summariseStreamLine = (line: string): AgentEventSummary | null => {
  let event: Record<string, unknown>
  try {
    event = JSON.parse(line) as Record<string, unknown>
  } catch {
    return null
  }
  const type = event.type
  if (type === "system" && event.subtype === "init") {
    const tools = Array.isArray(event.tools) ? event.tools.length : 0
    return {
      summary: `agent started (model ${String(event.model ?? "?")}, ${tools} tools)`,
      data: { type, subtype: "init", model: event.model ?? null, session_id: event.session_id ?? null }
    }
  }
  if (type === "assistant") {
    const content = ((event.message as { content?: unknown })?.content ?? []) as Array<Record<string, unknown>>
    const parts = Array.isArray(content) ? content : []
    const tools = parts.filter((b) => b.type === "tool_use")
    if (tools.length > 0) {
      return {
        summary: tools
          .map(
            (t) =>
              `uses ${String(t.name)}${describeInput(t.input as Record<string, unknown>) ? `: ${describeInput(t.input as Record<string, unknown>)}` : ""}`
          )
          .join("; "),
        data: { type, tools: tools.map((t) => t.name) }
      }
    }
    const text = parts
      .filter((b) => b.type === "text")
      .map((b) => String(b.text))
      .join(" ")
    return text.trim() === "" ? null : { summary: `says: ${cut(text)}`, data: { type } }
  }
  if (type === "result") {
    return {
      summary: `finished: ${String(event.subtype ?? "?")}${event.is_error ? " (error)" : ""}, ${String(event.num_turns ?? "?")} turns`,
      data: {
        type,
        subtype: event.subtype ?? null,
        is_error: event.is_error ?? null,
        num_turns: event.num_turns ?? null,
        total_cost_usd: event.total_cost_usd ?? null
      }
    }
  }
  return null
}
