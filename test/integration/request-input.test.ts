import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { makeBareRepo, runOnce, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

interface Outcome {
  readonly status: string
  readonly error: string | null
  readonly text: string | null
  readonly request_status: string
}

const insert = (fields: { prompt: string; config?: unknown; metadata?: unknown; repo_url?: string; branch?: string }) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, config, metadata, repo_url, branch)
      VALUES (${fields.prompt}, ${fields.config === undefined ? null : JSON.stringify(fields.config)}::jsonb,
              ${fields.metadata === undefined ? null : JSON.stringify(fields.metadata)}::jsonb,
              ${fields.repo_url ?? null}, ${fields.branch ?? "main"})
      RETURNING id`.pipe(Effect.map((rows) => rows[0]!.id))
  )

const outcomeOf = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<Outcome>`SELECT r.status, r.error, r.output->'result'->>'result' AS text, q.status AS request_status
      FROM orchestration_results r JOIN orchestration_requests q ON q.id = r.request_id
      WHERE r.request_id = ${id}`.pipe(Effect.map((rows) => rows[0]!))
  )

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("what a request carries", (it) => {
  it.effect("reaches the agent: metadata as env vars, identity, the model; the worker's secrets do not", () =>
    Effect.gen(function* () {
      const id = yield* insert({
        prompt: "@env SUPABASE_URL PR_NUMBER CLAUDE_CODE_AGENT_ID DATABASE_URL SSH_PRIVATE_KEY TMPDIR\n@args",
        config: { model: "opus" },
        metadata: { supabaseUrl: "https://db.example.invalid", prNumber: 42 }
      })
      process.env.SSH_PRIVATE_KEY = "-----BEGIN KEY----- secret"
      yield* runOnce(writePipeline().file, { workerName: "w-env" }).pipe(
        Effect.ensuring(Effect.sync(() => delete process.env.SSH_PRIVATE_KEY))
      )
      const o = yield* outcomeOf(id)
      expect(o.status).toBe("success")
      expect(o.text).toContain("SUPABASE_URL=https://db.example.invalid")
      expect(o.text).toContain("PR_NUMBER=42")
      expect(o.text).toContain("CLAUDE_CODE_AGENT_ID=w-env/1")
      expect(o.text).toContain("DATABASE_URL=<unset>")
      expect(o.text).toContain("SSH_PRIVATE_KEY=<unset>")
      expect(o.text).toMatch(/TMPDIR=.*\.tmp/)
      expect(o.text).toContain('"--model","opus","--"')
    })
  )

  it.effect("takes the request's model and timeout over the pipeline's and the environment's", () =>
    Effect.gen(function* () {
      const own = yield* insert({ prompt: "@args", config: { model: "opus", max_turns: 3, max_budget_usd: 0.5 } })
      const inherited = yield* insert({ prompt: "@args" })
      const quick = yield* insert({ prompt: "@sleep 20000", config: { timeout_minutes: 0.01 } })
      const pipeline = writePipeline({
        agent: "  model: haiku\n  timeout: 10m\n  max_turns: 10\n  max_budget_usd: 2\n  mcp_config: ./mcp.json"
      })
      // MCLAUDE_TIMEOUT_MS (the environment) says a minute; the request says 600 ms.
      yield* runOnce(pipeline.file, { workerCount: 3, agentTimeoutMs: 60_000 })
      const ownArgs = (yield* outcomeOf(own)).text
      expect(ownArgs).toContain('"--model","opus"')
      expect(ownArgs).toContain('"--max-turns","3","--max-budget-usd","0.5"')
      const inheritedArgs = (yield* outcomeOf(inherited)).text
      expect(inheritedArgs).toContain('"--model","haiku"')
      expect(inheritedArgs).toContain('"--max-turns","10","--max-budget-usd","2"')
      expect(inheritedArgs).toContain(`"--mcp-config","${pipeline.dir}/mcp.json"`)
      const timedOut = yield* outcomeOf(quick)
      expect(timedOut.status).toBe("timeout")
      expect(timedOut.error).toContain("within 600 ms")
    })
  )

  it.effect("fails bad requests with a clear error in their result row, and keeps working", () =>
    Effect.gen(function* () {
      const repo = makeBareRepo()
      const cases = {
        path: yield* insert({ prompt: "@say hi", metadata: { path: "/tmp/evil" } }),
        preload: yield* insert({ prompt: "@say hi", metadata: { LD_PRELOAD: "/tmp/evil.so" } }),
        nested: yield* insert({ prompt: "@say hi", metadata: { deep: { deeper: true } } }),
        negative: yield* insert({ prompt: "@say hi", config: { timeout_minutes: -5 } }),
        wrongType: yield* insert({ prompt: "@say hi", config: { model: 7 } }),
        unknownKey: yield* insert({ prompt: "@say hi", config: { timeout_minute: 5 } }),
        uploadPack: yield* insert({ prompt: "@say hi", repo_url: "--upload-pack=touch /tmp/pwned" }),
        ext: yield* insert({ prompt: "@say hi", repo_url: "ext::sh -c touch% /tmp/pwned" }),
        noBranch: yield* insert({ prompt: "@say hi", repo_url: repo.url, branch: "does-not-exist" }),
        badBranch: yield* insert({ prompt: "@say hi", repo_url: repo.url, branch: "--orphan" }),
        crash: yield* insert({ prompt: "@crash" }),
        malformed: yield* insert({ prompt: "@malformed" }),
        apiError: yield* insert({ prompt: "@error API Error: 529 overloaded" }),
        maxTurns: yield* insert({ prompt: "@max-turns" }),
        denied: yield* insert({ prompt: "@deny Bash" })
      }
      const good = yield* insert({ prompt: "@say still here" })
      const summary = yield* runOnce(writePipeline().file, { workerCount: 3 })
      expect(summary.processed).toBe(Object.keys(cases).length + 1)

      const expected: Record<keyof typeof cases, [string, string]> = {
        path: ["error", 'metadata key "path" would set PATH'],
        preload: ["error", 'metadata key "LD_PRELOAD" would set LD_PRELOAD'],
        nested: ["error", 'metadata value of "deep" must be a string, number or boolean'],
        negative: ["error", "timeout_minutes must be greater than 0"],
        wrongType: ["error", "invalid request config"],
        unknownKey: ["error", "timeout_minute"],
        uploadPack: ["error", 'starts with "-"'],
        ext: ["error", "remote helper"],
        noBranch: ["error", 'branch "does-not-exist" does not exist'],
        badBranch: ["error", 'branch "--orphan" is not a valid branch name'],
        crash: ["error", "exited with code 3 without a JSON result: fake-agent: crashed on purpose"],
        malformed: ["error", "without a JSON result: this is not { json"],
        apiError: ["error", "the agent reported an error: API Error: 529 overloaded"],
        maxTurns: ["partial", "error_max_turns"],
        denied: ["partial", "denied permission"]
      }
      for (const [name, id] of Object.entries(cases)) {
        const o = yield* outcomeOf(id)
        const [status, message] = expected[name as keyof typeof cases]
        expect([name, o.status]).toEqual([name, status])
        expect([name, o.error]).toEqual([name, expect.stringContaining(message)])
        expect([name, o.request_status]).toEqual([name, status === "partial" ? "completed" : "failed"])
      }
      expect((yield* outcomeOf(good)).status).toBe("success")
    })
  )
})
