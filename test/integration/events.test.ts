import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { DatabaseUrl } from "../../src/db/Database.js"
import { runCli, startCli } from "../support/cli.js"
import { runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

layer(TestDatabase, { excludeTestServices: true, timeout: "90 seconds" })("progress events", (it) => {
  it.effect("record the claim, every stage, and the agent's own steps as they happen", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
        VALUES (${"@say looking around\n@say all good"}) RETURNING id`
      yield* runOnce(writePipeline().file)
      const events = yield* sql<{
        kind: string
        stage: string
        message: string | null
        at: Date
      }>`SELECT kind, stage, message, at
        FROM orchestration_events WHERE request_id = ${row!.id} ORDER BY id`
      expect(events.map((e) => `${e.kind} ${e.stage}`)).toEqual([
        "claimed claim",
        "stage-started prepare-workspace",
        "stage-finished prepare-workspace",
        "stage-started customize-skill",
        "stage-finished customize-skill",
        "stage-started execute-mclaude",
        "agent execute-mclaude",
        "agent execute-mclaude",
        "agent execute-mclaude",
        "agent execute-mclaude",
        "stage-finished execute-mclaude",
        "stage-started extract-git-artifacts",
        "stage-finished extract-git-artifacts",
        "stage-started record",
        "stage-finished record"
      ])
      expect(events.filter((e) => e.kind === "agent").map((e) => e.message)).toEqual([
        "agent started (model claude-sonnet-4-5, 2 tools)",
        "says: looking around",
        "says: all good",
        "finished: success, 1 turns"
      ])
      // In the order they happened.
      const times = events.map((e) => e.at.getTime())
      expect([...times].sort((a, b) => a - b)).toEqual(times)
    })
  )

  it.effect("stageline logs --follow prints them live and stops when the request ends", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const env = {
        DATABASE_URL: Redacted.value(yield* DatabaseUrl),
        WORKSPACE_BASE: tempDir("ws"),
        LOG_LEVEL: "error"
      }
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
        VALUES (${"@sleep 800\n@say done waiting"}) RETURNING id`
      const follower = startCli(["logs", row!.id, "--follow"], env)
      const worker = yield* Effect.promise(() => runCli(["run", "--once", "--pipeline", writePipeline().file], env))
      expect(worker.code).toBe(0)
      const { code } = yield* Effect.promise(() => follower.exited)
      expect(code).toBe(0)
      const out = follower.output()
      expect(out).toMatch(/#1 claim\s+claimed by/)
      expect(out).toMatch(/#1 execute-mclaude\s+says: done waiting/)
      expect(out).toMatch(/#1 record\s+ok in \d+ ms/)
      expect(out.trim().split("\n").at(-1)).toBe(`request ${row!.id} is completed`)
      const once = yield* Effect.promise(() => runCli(["logs", row!.id], env))
      expect(once.output).toContain("execute-mclaude")
      const missing = yield* Effect.promise(() => runCli(["logs", "00000000-0000-0000-0000-000000000000"], env))
      expect(missing.code).toBe(1)
      expect(missing.output).toContain("no request 00000000-0000-0000-0000-000000000000")
    })
  )
})
