import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { start } from "../../src/model/ScriptedModel.js"

const post = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
  )

const user = (text: string) => ({ role: "user", content: [{ type: "text", text }] })

describe("the scripted model endpoint", () => {
  it.scoped("answers turn by turn, in JSON or as a stream, and records every request", () =>
    Effect.gen(function* () {
      const server = yield* start((c) =>
        c.prompt === "slow"
          ? [{ text: "late", delayMs: 200 }]
          : [
              { tools: [{ name: "Bash", input: { command: "ls" } }] },
              { tools: [{ name: "Write", input: { file_path: "a.txt", content: "x" } }] },
              { text: "all done" }
            ]
      )
      const first = yield* post(`${server.url}/v1/messages`, { model: "m1", messages: [user("go")] })
      const firstBody = (yield* Effect.promise(() => first.json())) as {
        content: Array<{ type: string; name: string }>
        stop_reason: string
      }
      expect(first.status).toBe(200)
      expect(firstBody.stop_reason).toBe("tool_use")
      expect(firstBody.content).toMatchObject([{ type: "tool_use", name: "Bash" }])

      const history = [user("go"), { role: "assistant", content: [] }, user("result")]
      const second = (yield* Effect.promise(async () =>
        (
          await fetch(`${server.url}/v1/messages`, {
            method: "POST",
            body: JSON.stringify({ model: "m1", messages: history })
          })
        ).json()
      )) as { content: Array<{ name: string }> }
      expect(second.content[0]!.name).toBe("Write")

      const third = yield* post(`${server.url}/v1/messages?beta=true`, {
        model: "m1",
        stream: true,
        messages: [...history, { role: "assistant", content: [] }, user("result 2")]
      })
      expect(third.headers.get("content-type")).toBe("text/event-stream")
      const events = yield* Effect.promise(() => third.text())
      expect(events.match(/^event: (\w+)/gm)?.map((e) => e.slice(7))).toEqual([
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop"
      ])
      expect(events).toContain('"text":"all done"')

      const started = Date.now()
      yield* post(`${server.url}/v1/messages`, { model: "m1", messages: [user("slow")] })
      expect(Date.now() - started).toBeGreaterThanOrEqual(190)

      const count = yield* post(`${server.url}/v1/messages/count_tokens`, { messages: [user("hello")] })
      expect(((yield* Effect.promise(() => count.json())) as { input_tokens: number }).input_tokens).toBeGreaterThan(0)
      const missing = yield* post(`${server.url}/v1/complete`, {})
      expect(missing.status).toBe(404)

      expect(server.requests.map((r) => r.path)).toEqual([
        "/v1/messages",
        "/v1/messages",
        "/v1/messages",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/complete"
      ])
      expect(server.turns()).toHaveLength(4)
    })
  )

  it.scoped("answers a scripted HTTP error with its status", () =>
    Effect.gen(function* () {
      const server = yield* start(() => [{ error: { status: 529, type: "overloaded_error", message: "busy" } }])
      const response = yield* post(`${server.url}/v1/messages`, { model: "m", messages: [user("x")] })
      expect(response.status).toBe(529)
      expect(yield* Effect.promise(() => response.json())).toEqual({
        type: "error",
        error: { type: "overloaded_error", message: "busy" }
      })
    })
  )
})
