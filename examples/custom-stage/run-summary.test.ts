/**
 * The example plugin, loaded from its path by a real worker against PostgreSQL, as a user's would be.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { RegistryLive } from "../../src/cli/Cli.js"
import { load } from "../../src/pipeline/Compiler.js"
import { makeBareRepo, runOnce, writePipeline } from "../../test/support/harness.js"
import { TestDatabase } from "../../test/support/TestDatabase.js"

const plugin = path.join(import.meta.dirname, "run-summary.ts")

/** A webhook receiver on 127.0.0.1 that keeps what it is sent. */
const webhook = Effect.acquireRelease(
  Effect.async<{ url: string; received: Array<{ request_id: string; markdown: string }>; server: http.Server }>(
    (resume) => {
      const received: Array<{ request_id: string; markdown: string }> = []
      const server = http.createServer((req, res) => {
        let body = ""
        req.on("data", (c) => {
          body += c
        })
        req.on("end", () => {
          received.push(JSON.parse(body))
          res.writeHead(204).end()
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(
          Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, server })
        )
      )
    }
  ),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
    })
)

const stages = `
  - claim
  - prepare-workspace
  - execute-mclaude
  - extract-git-artifacts
  - use: run-summary
    with:
      title: Code review
      webhook_metadata_key: summaryWebhook
  - record
`

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("the run-summary example plugin", (it) => {
  it.effect("its pipeline file is valid", () =>
    Effect.gen(function* () {
      const compiled = yield* load(path.join(import.meta.dirname, "pipeline.yaml")).pipe(Effect.provide(RegistryLive))
      const summary = compiled.stages.find((s) => s.id === "run-summary")!
      expect(summary.origin).toBe("plugin ./run-summary.ts")
      expect(summary.runsAfterFailure).toBe(true)
    })
  )

  it.scoped("summarises a run into the result and posts it to the request's webhook", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const hook = yield* webhook
      const repo = makeBareRepo()
      const prompt =
        "Fix the typo in the README.\n@write README.md fixed\n@commit Fix typo\n@say Opened https://github.com/acme/w/pull/9"
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt, metadata)
        VALUES (${repo.url}, ${prompt}, ${JSON.stringify({ summaryWebhook: hook.url })}::jsonb) RETURNING id`
      yield* runOnce(writePipeline({ top: `plugins: [${plugin}]`, stages }).file)

      const [result] = yield* sql<{ status: string; summary: { markdown: string; webhook: { status: number } } }>`
        SELECT status, output->'extra'->'summary' AS summary FROM orchestration_results WHERE request_id = ${row!.id}`
      expect(result!.status).toBe("success")
      const markdown = result!.summary.markdown
      expect(markdown).toContain("# Code review")
      expect(markdown).toContain(`\`${row!.id}\` (attempt 1)`)
      expect(markdown).toContain("- **Asked**: Fix the typo in the README.")
      expect(markdown).toContain("- **Pull request**: https://github.com/acme/w/pull/9")
      expect(markdown).toMatch(/- `[0-9a-f]{12}` Fix typo/)
      expect(markdown).toContain("| execute-mclaude | ok |")
      expect(result!.summary.webhook.status).toBe(204)
      expect(hook.received).toEqual([{ request_id: row!.id, markdown }])
    })
  )

  it.effect("summarises a failed run too, and a dead webhook does not fail the request", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, metadata)
        VALUES ('@crash', ${JSON.stringify({ summaryWebhook: "http://127.0.0.1:9/nobody-listens" })}::jsonb) RETURNING id`
      yield* runOnce(writePipeline({ top: `plugins: [${plugin}]`, stages }).file)
      const [result] = yield* sql<{ status: string; summary: { markdown: string; webhook: { error: string } } }>`
        SELECT status, output->'extra'->'summary' AS summary FROM orchestration_results WHERE request_id = ${row!.id}`
      expect(result!.status).toBe("error")
      expect(result!.summary.markdown).toContain("- **Agent**: error")
      expect(result!.summary.webhook.error).toBeTruthy()
    })
  )
})
