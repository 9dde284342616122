/**
 * A scripted stand-in for the Anthropic Messages API, on 127.0.0.1: what the demo talks to when no API key
 * is set, and what the contract tests run the real Claude Code CLI against. It answers
 * `POST /v1/messages` (streaming SSE or plain JSON) and `POST /v1/messages/count_tokens`, 404 otherwise,
 * and records every request it receives.
 *
 * A script maps a conversation to its turns: the first reply, then one reply per tool round. The turn
 * answered is the number of assistant messages already in the conversation, so a `tool` turn is followed,
 * once the CLI sends the tool's result back, by the next turn.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Context, Effect, Layer } from "effect"

export type Turn =
  | { readonly text: string; readonly delayMs?: number }
  | {
      readonly tools: ReadonlyArray<{ readonly name: string; readonly input: Record<string, unknown> }>
      readonly text?: string
      readonly delayMs?: number
    }
  | {
      readonly error: { readonly status: number; readonly type: string; readonly message: string }
      readonly delayMs?: number
    }

export interface Conversation {
  /** The text of the first user message: the prompt. */
  readonly prompt: string
  readonly model: string
  readonly system: string
  readonly body: Record<string, unknown>
}

/** The turns for a conversation; the reply to turn `n` is `turns[n]` (the last one repeats). */
export type Script = (conversation: Conversation) => ReadonlyArray<Turn>

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string | undefined>
  readonly body: Record<string, unknown> | null
}

export interface ScriptedModelServer {
  readonly url: string
  readonly requests: ReadonlyArray<RecordedRequest>
  /** The requests that asked the model for a turn (POST /v1/messages). */
  readonly turns: () => ReadonlyArray<RecordedRequest>
}

type Block = Record<string, unknown>

const textOf = (content: unknown): string => {
  if (typeof content === "string") return content
  if (Array.isArray(content)) {
    return content
      .map((b: Block) => (b.type === "text" && typeof b.text === "string" ? b.text : ""))
      .filter(Boolean)
      .join("\n")
  }
  return ""
}

const conversationOf = (body: Record<string, unknown>): Conversation => {
  const messages = Array.isArray(body.messages) ? (body.messages as Array<{ role: string; content: unknown }>) : []
  const firstUser = messages.find((m) => m.role === "user")
  // The CLI prepends reminders to the first user message; the prompt is its last text block.
  const blocks = Array.isArray(firstUser?.content) ? (firstUser.content as Array<Block>) : []
  const texts = blocks.filter((b) => b.type === "text").map((b) => String(b.text))
  const prompt = texts.length > 0 ? texts[texts.length - 1]! : textOf(firstUser?.content)
  const system = Array.isArray(body.system) ? textOf(body.system) : typeof body.system === "string" ? body.system : ""
  return { prompt, model: String(body.model ?? ""), system, body }
}

const usage = { input_tokens: 120, output_tokens: 30, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 }

const contentOf = (turn: Turn, index: number): Array<Block> => {
  if ("tools" in turn) {
    return [
      ...(turn.text ? [{ type: "text", text: turn.text }] : []),
      ...turn.tools.map((t, i) => ({
        type: "tool_use",
        id: `toolu_scripted_${index}_${i}`,
        name: t.name,
        input: t.input
      }))
    ]
  }
  return "text" in turn ? [{ type: "text", text: turn.text }] : []
}

const messageOf = (turn: Turn, index: number, model: string) => ({
  id: `msg_scripted_${index}_${Date.now()}`,
  type: "message",
  role: "assistant",
  model,
  content: contentOf(turn, index),
  stop_reason: "tools" in turn ? "tool_use" : "end_turn",
  stop_sequence: null,
  usage
})

const sse = (res: http.ServerResponse, message: ReturnType<typeof messageOf>) => {
  const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" })
  send("message_start", {
    type: "message_start",
    message: { ...message, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } }
  })
  message.content.forEach((block, index) => {
    if (block.type === "text") {
      send("content_block_start", { type: "content_block_start", index, content_block: { type: "text", text: "" } })
      send("content_block_delta", {
        type: "content_block_delta",
        index,
        delta: { type: "text_delta", text: block.text }
      })
    } else {
      send("content_block_start", {
        type: "content_block_start",
        index,
        content_block: { type: "tool_use", id: block.id, name: block.name, input: {} }
      })
      send("content_block_delta", {
        type: "content_block_delta",
        index,
        delta: { type: "input_json_delta", partial_json: JSON.stringify(block.input) }
      })
    }
    send("content_block_stop", { type: "content_block_stop", index })
  })
  send("message_delta", {
    type: "message_delta",
    delta: { stop_reason: message.stop_reason, stop_sequence: null },
    usage: { output_tokens: usage.output_tokens }
  })
  send("message_stop", { type: "message_stop" })
  res.end()
}

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify(body))
}

const readBody = (req: http.IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    let data = ""
    req.setEncoding("utf8")
    req.on("data", (chunk) => {
      data += chunk
    })
    req.on("end", () => resolve(data))
    req.on("error", reject)
  })

/**
 * Starts the server for the life of the scope: on a free port of 127.0.0.1 unless told otherwise (the
 * container smoke test serves it to a worker in another container).
 */
export const start = (script: Script, listen: { readonly host?: string; readonly port?: number } = {}) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; handle: ScriptedModelServer }>((resume) => {
      const requests: Array<RecordedRequest> = []
      const server = http.createServer(async (req, res) => {
        const raw = await readBody(req).catch(() => "")
        let body: Record<string, unknown> | null = null
        try {
          body = raw ? (JSON.parse(raw) as Record<string, unknown>) : null
        } catch {
          body = null
        }
        const path = (req.url ?? "/").split("?")[0] ?? "/"
        const headers: Record<string, string | undefined> = {}
        for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(", ") : v
        requests.push({ method: req.method ?? "GET", path, headers, body })

        if (req.method === "POST" && path === "/v1/messages/count_tokens") {
          return json(res, 200, { input_tokens: Math.max(1, Math.ceil(raw.length / 4)) })
        }
        if (req.method !== "POST" || path !== "/v1/messages" || body === null) {
          return json(res, 404, {
            type: "error",
            error: { type: "not_found_error", message: `no route for ${req.method} ${path}` }
          })
        }
        const conversation = conversationOf(body)
        const messages = Array.isArray(body.messages) ? (body.messages as Array<{ role: string }>) : []
        const index = messages.filter((m) => m.role === "assistant").length
        const turns = script(conversation)
        const turn = turns[Math.min(index, turns.length - 1)] ?? { text: "(the script has no turns)" }
        if (turn.delayMs) await new Promise((r) => setTimeout(r, turn.delayMs))
        if ("error" in turn) {
          return json(res, turn.error.status, {
            type: "error",
            error: { type: turn.error.type, message: turn.error.message }
          })
        }
        const message = messageOf(turn, index, conversation.model)
        if (body.stream === true) return sse(res, message)
        return json(res, 200, message)
      })
      server.on("error", (error) => resume(Effect.die(error)))
      const host = listen.host ?? "127.0.0.1"
      server.listen(listen.port ?? 0, host, () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed({
            server,
            handle: {
              url: `http://${host}:${port}`,
              requests,
              turns: () => requests.filter((r) => r.method === "POST" && r.path === "/v1/messages")
            }
          })
        )
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ handle }) => handle))

export class ScriptedModel extends Context.Tag("stageline/ScriptedModel")<ScriptedModel, ScriptedModelServer>() {
  static readonly layer = (script: Script) => Layer.scoped(ScriptedModel, start(script))
}
