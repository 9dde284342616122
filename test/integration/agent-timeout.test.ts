import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { runOnce, tempDir, writePipeline } from "../support/harness.js"
import { isRunning } from "../support/processes.js"
import { TestDatabase } from "../support/TestDatabase.js"

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("an agent that never finishes", (it) => {
  it.effect("ends as timeout, and no process it started is left", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const pidFile = path.join(tempDir("pids"), "pids.json")
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, config, metadata)
          VALUES (${"@ignore-sigterm\n@hang"}, ${JSON.stringify({ timeout_minutes: 0.03 })}::jsonb,
                  ${JSON.stringify({ pidFile })}::jsonb)
          RETURNING id`
      const pipeline = writePipeline({
        stages: `
  - claim
  - prepare-workspace
  - use: execute-mclaude
    with: { kill_grace_ms: 300 }
  - record
`
      })
      yield* runOnce(pipeline.file)

      const [result] = yield* sql<{ status: string; error: string; stdout: string }>`SELECT status, error,
          output->>'stdout' AS stdout FROM orchestration_results WHERE request_id = ${row!.id}`
      expect(result!.status).toBe("timeout")
      expect(result!.error).toContain("did not finish within 1800 ms")
      // What it printed before it was stopped is kept.
      expect(result!.stdout).toContain('"subtype":"init"')
      const [request] = yield* sql<{
        status: string
      }>`SELECT status FROM orchestration_requests WHERE id = ${row!.id}`
      expect(request!.status).toBe("failed")

      // The agent (which ignored SIGTERM), its child, and a grandchild that left the process group.
      const pids = JSON.parse(fs.readFileSync(pidFile, "utf8")) as Array<number>
      expect(pids).toHaveLength(3)
      expect(pids.filter(isRunning)).toEqual([])
    })
  )

  it.effect("fails a stage that exceeds its pipeline timeout, and still records", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
          VALUES (${"@sleep 30000"}) RETURNING id`
      const pipeline = writePipeline({
        stages: `
  - claim
  - prepare-workspace
  - use: execute-mclaude
    timeout: 500ms
  - record
`
      })
      yield* runOnce(pipeline.file)
      const [result] = yield* sql<{ status: string; error: string }>`SELECT status, error
          FROM orchestration_results WHERE request_id = ${row!.id}`
      expect(result!.status).toBe("timeout")
      expect(result!.error).toBe('stage "execute-mclaude" did not finish within 500 ms')
    })
  )
})
