import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { defaultStages, makeBareRepo, runOnce, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

const stages = defaultStages

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("a request's skill_overrides", (it) => {
  it.effect("reach only that request's agent, even when requests run side by side", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const insert = (config: unknown) =>
        sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, config)
          VALUES (${"@sleep 400\n@domains"}, ${JSON.stringify(config)}::jsonb) RETURNING id`.pipe(
          Effect.map((r) => r[0]!.id)
        )
      const a = yield* insert({ skill_overrides: { files: { "team-a.md": "# Team A\n" } } })
      const b = yield* insert({ skill_overrides: { domains: ["testing"], files: { "team-b.md": "# Team B\n" } } })
      const plain = yield* insert({})
      const pipeline = writePipeline({ stages })
      yield* runOnce(pipeline.file, { workerCount: 3 })

      const seen = (id: string) =>
        sql<{
          status: string
          text: string
          error: string | null
        }>`SELECT status, output->'result'->>'result' AS text, error
          FROM orchestration_results WHERE request_id = ${id}`.pipe(Effect.map((r) => r[0]!))
      expect(yield* seen(a)).toEqual({ status: "success", error: null, text: 'domains=["code-review.md","team-a.md"]' })
      expect(yield* seen(b)).toEqual({
        status: "success",
        error: null,
        text: 'domains=["code-review.md","team-b.md","testing.md"]'
      })
      expect(yield* seen(plain)).toEqual({ status: "success", error: null, text: 'domains=["code-review.md"]' })
      // The shared skill got only the pipeline's domain.
      const shared = path.join(pipeline.configDir, "skills", "orchestration", "references", "domains")
      expect(fs.readdirSync(shared).filter((f) => f !== ".gitkeep")).toEqual(["code-review.md"])
    })
  )

  it.effect("refuse file names that are paths, and unknown bundled domains, with a clear error", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const cases: Record<string, [unknown, string]> = {
        traversal: [{ files: { "../../etc/passwd": "x" } }, '"../../etc/passwd" is a path'],
        absolute: [{ files: { "/etc/evil.md": "x" } }, '"/etc/evil.md" is a path'],
        notMarkdown: [{ files: { "notes.txt": "x" } }, '"notes.txt" is not a domain file name'],
        unknown: [{ domains: ["no-such-domain"] }, 'no bundled domain "no-such-domain"'],
        pathAsDomain: [{ domains: ["../secrets"] }, "a bundled domain is named like code-review"]
      }
      const ids: Record<string, string> = {}
      for (const [name, [overrides]] of Object.entries(cases)) {
        const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, config)
          VALUES ('@say hi', ${JSON.stringify({ skill_overrides: overrides })}::jsonb) RETURNING id`
        ids[name] = row!.id
      }
      yield* runOnce(writePipeline({ stages }).file, { workerCount: 2 })
      for (const [name, [, message]] of Object.entries(cases)) {
        const [r] = yield* sql<{ status: string; error: string }>`SELECT status, error FROM orchestration_results
          WHERE request_id = ${ids[name]!}`
        expect([name, r!.status]).toEqual([name, "error"])
        expect([name, r!.error]).toEqual([name, expect.stringContaining(message)])
      }
    })
  )
})

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })(
  "the pipeline's skill and project context",
  (it) => {
    it.effect("replace SKILL.md, and give the agent a CLAUDE.md it does not commit", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const repo = makeBareRepo()
        const pipeline = writePipeline({
          stages: `
  - claim
  - prepare-workspace
  - use: customize-skill
    with:
      skill_md: ./SKILL.md
      project_context: ./CLAUDE.md
  - execute-mclaude
  - extract-git-artifacts
  - record
`
        })
        fs.writeFileSync(
          path.join(pipeline.dir, "SKILL.md"),
          "---\nname: orchestration\ndescription: ours\n---\nOur own.\n"
        )
        fs.writeFileSync(path.join(pipeline.dir, "CLAUDE.md"), "# Project rules\n")
        const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
        VALUES (${repo.url}, ${"@ls\n@write notes.md hi\n@commit notes"}) RETURNING id`
        yield* runOnce(pipeline.file)
        const [r] = yield* sql<{ status: string; text: string; files: number }>`SELECT status,
          output->'result'->>'result' AS text, (output->'git'->'diffStat'->>'filesChanged')::int AS files
        FROM orchestration_results WHERE request_id = ${row!.id}`
        expect(r!.status).toBe("success")
        expect(r!.text).toContain('"CLAUDE.md"')
        // Only the agent's own file was committed: the project context stayed out.
        expect(r!.files).toBe(1)
        expect(fs.readFileSync(path.join(pipeline.configDir, "skills", "orchestration", "SKILL.md"), "utf8")).toContain(
          "Our own."
        )
      })
    )
    it.effect("install a skill of the pipeline's own from skill_source, and name a folder without SKILL.md", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const stagesFor = (source: string) => `
  - claim
  - prepare-workspace
  - use: customize-skill
    with:
      skill: acme-cli
      skill_source: ${source}
  - execute-mclaude
  - record
`
        const good = writePipeline({ stages: stagesFor("./skills/acme-cli") })
        const skillDir = path.join(good.dir, "skills", "acme-cli")
        fs.mkdirSync(skillDir, { recursive: true })
        fs.writeFileSync(
          path.join(skillDir, "SKILL.md"),
          "---\nname: acme-cli\ndescription: ACME's CLI\n---\nUse acme.\n"
        )
        const bad = writePipeline({ stages: stagesFor("./nowhere") })
        const insert = () =>
          sql<{ id: string }>`INSERT INTO orchestration_requests (prompt) VALUES (${"@say hi"}) RETURNING id`.pipe(
            Effect.map((rows) => rows[0]!.id)
          )
        const first = yield* insert()
        yield* runOnce(good.file)
        const second = yield* insert()
        yield* runOnce(bad.file)
        const rows = yield* sql<{ request_id: string; status: string; error: string | null }>`SELECT request_id,
          status, error FROM orchestration_results WHERE request_id IN (${first}, ${second})`
        const of = (id: string) => rows.find((r) => r.request_id === id)!
        expect(of(first).status).toBe("success")
        expect(fs.readFileSync(path.join(good.configDir, "skills", "acme-cli", "SKILL.md"), "utf8")).toContain(
          "Use acme."
        )
        expect(of(second).status).toBe("error")
        expect(of(second).error).toContain("(skill_source) has no SKILL.md")
      })
    )
  }
)
