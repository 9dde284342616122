import * as fs from "node:fs"
import * as path from "node:path"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { DatabaseUrl } from "../../src/db/Database.js"
import { runCli } from "../support/cli.js"
import { tempDir } from "../support/harness.js"
import { EmptyDatabaseUrl } from "../support/TestDatabase.js"

const example = path.join(import.meta.dirname, "..", "..", "examples", "code-review-bot", "pipeline.yaml")

layer(EmptyDatabaseUrl, { excludeTestServices: true, timeout: "60 seconds" })("the stageline command", (it) => {
  it.effect("validate prints the resolved pipeline and exits 0 for a good file", () =>
    Effect.promise(async () => {
      const { code, output } = await runCli(["validate", example])
      expect(code).toBe(0)
      const resolved = JSON.parse(output.slice(output.indexOf("{"))) as { name: string; stages: Array<{ id: string }> }
      expect(resolved.name).toBe("code-review-bot")
      expect(resolved.stages.map((s) => s.id)).toEqual([
        "claim",
        "prepare-workspace",
        "customize-skill",
        "execute-mclaude",
        "extract-git-artifacts",
        "record"
      ])
    })
  )

  it.effect("validate prints every problem with file and line and exits 1 for a bad file", () =>
    Effect.promise(async () => {
      const file = path.join(tempDir("bad"), "bad.yaml")
      fs.writeFileSync(
        file,
        "name: bad\nstages:\n  - claim\n  - execute-mclaude\n  - use: record\n    retry: { times: many }\n"
      )
      const { code, output } = await runCli(["validate", file])
      expect(code).toBe(1)
      expect(output).toContain(`${file}:4: stage "execute-mclaude": requires: needs "workspace"`)
      expect(output).toContain(`${file}:6: stage "record": retry.times:`)
    })
  )

  it.effect("migrate, enqueue and status work against DATABASE_URL", () =>
    Effect.gen(function* () {
      const url = Redacted.value(yield* DatabaseUrl)
      yield* Effect.promise(async () => {
        const first = await runCli(["migrate"], { DATABASE_URL: url })
        expect(first.code).toBe(0)
        expect(first.output).toContain("applied 1_queue")
        const again = await runCli(["migrate"], { DATABASE_URL: url })
        expect(again.output).toContain("schema is up to date")

        const enqueued = await runCli(
          [
            "enqueue",
            "--repo",
            "https://example.invalid/r.git",
            "--config",
            '{"model":"haiku"}',
            "--idempotency-key",
            "k1",
            "Review it"
          ],
          { DATABASE_URL: url, LOG_LEVEL: "error" }
        )
        expect(enqueued.code).toBe(0)
        const id = enqueued.output.trim()
        expect(id).toMatch(/^[0-9a-f-]{36}$/)
        // The same idempotency key makes no second request.
        const twice = await runCli(["enqueue", "--idempotency-key", "k1", "Review it again"], {
          DATABASE_URL: url,
          LOG_LEVEL: "error"
        })
        expect(twice.output.trim()).toBe(id)

        const status = await runCli(["status"], { DATABASE_URL: url, LOG_LEVEL: "error" })
        expect(status.code).toBe(0)
        expect(status.output).toMatch(/status\s+count\npending\s+1\n/)
      })
    })
  )

  it.effect("run refuses an invalid pipeline before touching the database", () =>
    Effect.promise(async () => {
      const file = path.join(tempDir("bad"), "bad.yaml")
      fs.writeFileSync(file, "name: bad\nstages:\n  - nope\n")
      const { code, output } = await runCli(["run", "--once", "--pipeline", file], {
        DATABASE_URL: "postgres://nobody@127.0.0.1:1/none"
      })
      expect(code).toBe(1)
      expect(output).toContain('stage "nope": use: unknown stage "nope"')
    })
  )
})
