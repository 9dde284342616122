/**
 * The agent dying or hanging in the ways real ones do: killed by a signal, killed as the OOM killer does,
 * a real heap exhaustion, and a CLI that prints its result and then never exits. Each request ends with
 * a result row that says what happened, no process of it is left, and the worker takes the next request.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { runOnce, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"
import { orphanProcesses, report } from "./support/Fleet.js"

const stages = `
  - claim
  - prepare-workspace
  - use: execute-mclaude
    with:
      result_grace_ms: 300
      kill_grace_ms: 500
  - extract-git-artifacts
  - record
`

layer(TestDatabase, { excludeTestServices: true, timeout: "120 seconds" })("an agent that dies or hangs", (it) => {
  it.effect("ends its request with the reason, leaves no process, and the worker goes on", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const insert = (prompt: string) =>
        sql<{ id: string }>`INSERT INTO orchestration_requests (prompt) VALUES (${prompt}) RETURNING id`.pipe(
          Effect.map((r) => r[0]!.id)
        )
      const cases = {
        segfault: yield* insert("@say working\n@signal SIGSEGV"),
        terminated: yield* insert("@signal SIGTERM"),
        oomKiller: yield* insert("@kill-self"),
        outOfMemory: yield* insert("@oom"),
        resultThenHang: yield* insert("@say all done\n@result-then-hang")
      }
      const after = yield* insert("@say still here")
      // A timeout far beyond the test: the lingering agent must be ended by its result, not by the clock.
      const summary = yield* runOnce(writePipeline({ stages }).file, { workerCount: 2, agentTimeoutMs: 600_000 })
      expect(summary.processed).toBe(Object.keys(cases).length + 1)

      const outcome = (id: string) =>
        sql<{
          status: string
          error: string | null
          stderr: string
          text: string | null
          request_status: string
        }>`SELECT r.status, r.error, r.output->>'stderr' AS stderr, r.output->'result'->>'result' AS text,
                  q.status AS request_status
             FROM orchestration_results r JOIN orchestration_requests q ON q.id = r.request_id
            WHERE r.request_id = ${id}`.pipe(Effect.map((rows) => rows[0]!))
      const expected: Record<keyof typeof cases, [string, string]> = {
        segfault: ["error", "the agent was killed by SIGSEGV"],
        terminated: ["error", "the agent was killed by SIGTERM"],
        oomKiller: ["error", "the agent was killed by SIGKILL"],
        outOfMemory: ["error", "the agent was killed by SIGABRT"],
        resultThenHang: ["success", ""]
      }
      for (const [name, id] of Object.entries(cases)) {
        const o = yield* outcome(id)
        const [status, message] = expected[name as keyof typeof cases]
        expect([name, o.status]).toEqual([name, status])
        expect([name, o.error ?? ""]).toEqual([name, expect.stringContaining(message)])
        expect([name, o.request_status]).toEqual([name, status === "success" ? "completed" : "failed"])
      }
      expect((yield* outcome(cases.outOfMemory)).stderr).toContain("JavaScript heap out of memory")
      expect((yield* outcome(cases.resultThenHang)).text).toBe("all done")
      expect((yield* outcome(after)).status).toBe("success")
      const left = orphanProcesses([{ pid: process.pid }])
      report("agent-faults", {
        requests: Object.keys(cases).length + 1,
        faults: Object.keys(cases).length,
        orphans: left.length
      })
      expect(left).toEqual([])
    })
  )
})
