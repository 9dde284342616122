/**
 * Hostile input: whatever a row holds, written by whoever can insert one, the request ends with a clear
 * reason in its result row, nothing it names is touched, and the worker goes on to the next request.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { makeBareRepo, runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"
import { report } from "./support/Fleet.js"

/** JSON text given as it is, for values JSON.stringify cannot make (too deep for its stack). */
class RawJson {
  constructor(readonly text: string) {}
}

const json = (value: unknown) =>
  value === undefined ? null : value instanceof RawJson ? value.text : JSON.stringify(value)

interface Row {
  readonly prompt: string
  readonly config?: unknown
  readonly metadata?: unknown
  readonly repo_url?: string
  readonly branch?: string
}

const insert = (row: Row) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, config, metadata, repo_url, branch)
      VALUES (${row.prompt}, ${json(row.config)}::jsonb, ${json(row.metadata)}::jsonb,
              ${row.repo_url ?? null}, ${row.branch ?? "main"})
      RETURNING id`.pipe(Effect.map((rows) => rows[0]!.id))
  )

const outcomeOf = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{
      status: string
      error: string | null
      text: string | null
      stderr: string | null
      request_status: string
    }>`SELECT r.status, r.error, r.output->'result'->>'result' AS text, r.output->>'stderr' AS stderr,
              q.status AS request_status
         FROM orchestration_results r JOIN orchestration_requests q ON q.id = r.request_id
        WHERE r.request_id = ${id}`.pipe(Effect.map((rows) => rows[0]))
  )

/** `{"deeper": {"deeper": … "bottom" … }}`, `depth` levels down. */
const nested = (depth: number) => `${'{"deeper":'.repeat(depth)}"bottom"${"}".repeat(depth)}`

/** Runs every case and a harmless request after them, and checks each result row. */
const expectRefused = (
  cases: Record<string, readonly [Row, string | RegExp]>,
  pipelineFile: string,
  checks: Effect.Effect<void, never, SqlClient.SqlClient> = Effect.void
) =>
  Effect.gen(function* () {
    const ids: Record<string, string> = {}
    for (const [name, [row]] of Object.entries(cases)) ids[name] = yield* insert(row)
    const good = yield* insert({ prompt: "@say still here" })
    const summary = yield* runOnce(pipelineFile, { workerCount: 2 })
    // Rows a test inserted before (checked by the test itself) are processed in the same run.
    expect(summary.processed).toBeGreaterThanOrEqual(Object.keys(cases).length + 1)
    for (const [name, [, message]] of Object.entries(cases)) {
      const o = yield* outcomeOf(ids[name]!)
      expect([name, o?.status, o?.request_status]).toEqual([name, "error", "failed"])
      expect([name, o?.error]).toEqual([
        name,
        typeof message === "string" ? expect.stringContaining(message) : expect.stringMatching(message)
      ])
    }
    expect((yield* outcomeOf(good))?.status).toBe("success")
    yield* checks
    report(`hostile-input`, { requests: Object.keys(cases).length + 1, refused: Object.keys(cases).length })
  })

layer(TestDatabase, { excludeTestServices: true, timeout: "120 seconds" })("hostile input", (it) => {
  it.effect("metadata aimed at the agent's environment, of the wrong type, or too big", () =>
    expectRefused(
      {
        path: [{ prompt: "@say hi", metadata: { PATH: "/tmp/evil" } }, "would set PATH, which requests may not set"],
        ldPreload: [{ prompt: "@say hi", metadata: { LD_PRELOAD: "/tmp/evil.so" } }, "would set LD_PRELOAD"],
        nodeOptions: [
          { prompt: "@say hi", metadata: { nodeOptions: "--require /tmp/evil.js" } },
          "would set NODE_OPTIONS"
        ],
        home: [{ prompt: "@say hi", metadata: { home: "/tmp/evil" } }, "would set HOME"],
        claudeConfigDir: [
          { prompt: "@say hi", metadata: { claudeConfigDir: "/tmp/evil" } },
          "would set CLAUDE_CONFIG_DIR"
        ],
        sameNameTwice: [{ prompt: "@say hi", metadata: { apiKey: "a", API_KEY: "b" } }, "both become API_KEY"],
        notAName: [{ prompt: "@say hi", metadata: { "1x": "a" } }, "does not make a valid environment variable name"],
        array: [{ prompt: "@say hi", metadata: { list: [1, 2] } }, "must be a string, number or boolean, not an array"],
        object: [{ prompt: "@say hi", metadata: { obj: { a: 1 } } }, "not an object"],
        notAnObject: [{ prompt: "@say hi", metadata: ["a"] }, "metadata must be a JSON object"],
        deep: [{ prompt: "@say hi", metadata: new RawJson(`{"deep":${nested(5_000)}}`) }, "not an object"],
        huge: [{ prompt: "@say hi", metadata: { big: "x".repeat(100_000) } }, "the limit is 65536"],
        hugeInTotal: [
          {
            prompt: "@say hi",
            metadata: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`key${i}`, "y".repeat(60_000)]))
          },
          /metadata is \d+ bytes in all; the limit is/
        ]
      },
      writePipeline().file
    )
  )

  it.effect("a huge prompt, NUL bytes and text that is not UTF-8", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // PostgreSQL itself refuses NUL in text and jsonb, and bytes that are not UTF-8: such a row never exists.
      const refusedByDatabase = [
        sql`INSERT INTO orchestration_requests (prompt) VALUES (${"@say a\u0000b"})`,
        sql`INSERT INTO orchestration_requests (prompt, metadata) VALUES ('@say hi', '{"a": "\\u0000"}'::jsonb)`,
        sql`INSERT INTO orchestration_requests (prompt) VALUES (convert_from('\\xff'::bytea, 'UTF8'))`
      ]
      for (const statement of refusedByDatabase) expect((yield* Effect.either(statement))._tag).toBe("Left")
      const loneSurrogate = yield* insert({ prompt: "@say half a pair: \uD800 end" })
      const agentBytes = yield* insert({ prompt: "@raw-bytes" })
      const agentBytesCrash = yield* insert({ prompt: "@raw-bytes\n@crash" })
      yield* expectRefused(
        {
          tenMegabytes: [{ prompt: `@say ${"z".repeat(10 * 1024 * 1024)}` }, "the limit is 131072"],
          empty: [{ prompt: "   " }, "the prompt is empty"]
        },
        writePipeline().file
      )
      // What cannot be stored as it is (a lone surrogate, NUL, bytes that are not UTF-8) arrives cleaned,
      // and the result row is still written.
      expect(yield* outcomeOf(loneSurrogate)).toMatchObject({ status: "success", text: "half a pair: \uFFFD end" })
      const bytes = yield* outcomeOf(agentBytes)
      expect(bytes).toMatchObject({ status: "success", text: "nul: bad:\uFFFD escaped:\\u0000" })
      expect(bytes?.stderr).toBe("\uFFFD\uFFFD\n")
      expect(yield* outcomeOf(agentBytesCrash)).toMatchObject({
        status: "error",
        error: expect.stringContaining("crashed on purpose")
      })
    })
  )

  it.effect("repo_url and branch that git would read as options, helpers, local files or credentials", () =>
    Effect.gen(function* () {
      const repo = makeBareRepo()
      const marker = path.join(tempDir("pwned"), "pwned")
      yield* expectRefused(
        {
          uploadPack: [{ prompt: "@say hi", repo_url: `--upload-pack=touch ${marker}` }, 'starts with "-"'],
          ext: [{ prompt: "@say hi", repo_url: `ext::sh -c touch% ${marker}` }, "remote helper"],
          fileEtc: [
            { prompt: "@say hi", repo_url: "file:///etc" },
            /does not appear to be a git repository|not a git repository/
          ],
          password: [
            { prompt: "@say hi", repo_url: "https://user:hunter2@127.0.0.1:1/x.git" },
            'repo_url "https://***@127.0.0.1:1/x.git" carries credentials'
          ],
          token: [
            { prompt: "@say hi", repo_url: "https://ghp_secret123@127.0.0.1:1/x.git" },
            'repo_url "https://***@127.0.0.1:1/x.git" carries credentials'
          ],
          newline: [{ prompt: "@say hi", repo_url: `${repo.url}\n--upload-pack=x` }, "control characters"],
          orphan: [{ prompt: "@say hi", repo_url: repo.url, branch: "--orphan" }, 'branch "--orphan" is not a valid'],
          upward: [{ prompt: "@say hi", repo_url: repo.url, branch: "../x" }, 'branch "../x" is not a valid'],
          option: [{ prompt: "@say hi", repo_url: repo.url, branch: "-b" }, 'branch "-b" is not a valid'],
          spaces: [{ prompt: "@say hi", repo_url: repo.url, branch: "main; rm -rf /" }, "is not a valid branch name"]
        },
        writePipeline().file,
        Effect.gen(function* () {
          expect(fs.existsSync(marker)).toBe(false)
          // Secrets in a refused URL are not repeated anywhere.
          const sql = yield* SqlClient.SqlClient
          const leaks = yield* sql`SELECT 1 FROM orchestration_results
            WHERE error LIKE '%hunter2%' OR error LIKE '%ghp_secret123%' OR output::text LIKE '%hunter2%'
               OR output::text LIKE '%ghp_secret123%'`.pipe(Effect.orDie)
          expect(leaks).toEqual([])
        }).pipe(Effect.orDie)
      )
    })
  )

  it.effect("skill_overrides with paths, absolute names and links out of the skill", () =>
    Effect.gen(function* () {
      const pipeline = writePipeline()
      // A file the overrides must never reach, and a link to it planted in the shared skill.
      const outside = path.join(tempDir("outside"), "victim.md")
      fs.writeFileSync(outside, "untouched\n")
      const domains = path.join(pipeline.configDir, "skills", "orchestration", "references", "domains")
      fs.mkdirSync(domains, { recursive: true })
      fs.cpSync(
        path.join(import.meta.dirname, "..", "..", "skills", "orchestration"),
        path.dirname(path.dirname(domains)),
        {
          recursive: true
        }
      )
      fs.symlinkSync(outside, path.join(domains, "linked.md"))
      const linked = yield* insert({
        prompt: "@domains",
        config: { skill_overrides: { files: { "linked.md": "# overwritten?\n" } } }
      })
      yield* expectRefused(
        {
          traversal: [
            { prompt: "@say hi", config: { skill_overrides: { files: { "../../etc/passwd": "x" } } } },
            '"../../etc/passwd" is a path'
          ],
          absolute: [
            { prompt: "@say hi", config: { skill_overrides: { files: { "/etc/evil.md": "x" } } } },
            '"/etc/evil.md" is a path'
          ],
          backslash: [
            { prompt: "@say hi", config: { skill_overrides: { files: { "..\\evil.md": "x" } } } },
            "is a path"
          ],
          domainPath: [
            { prompt: "@say hi", config: { skill_overrides: { domains: ["../../../etc/passwd"] } } },
            "a bundled domain is named like code-review"
          ],
          notMarkdown: [
            { prompt: "@say hi", config: { skill_overrides: { files: { "run.sh": "x" } } } },
            "is not a domain file name"
          ]
        },
        pipeline.file
      )
      // The request's own copy got its file; the link and what it points at are as they were.
      expect((yield* outcomeOf(linked))?.status).toBe("success")
      expect(fs.readFileSync(outside, "utf8")).toBe("untouched\n")
      expect(fs.readlinkSync(path.join(domains, "linked.md"))).toBe(outside)
    })
  )

  it.effect("a domains folder that links out of the skill is refused", () =>
    Effect.gen(function* () {
      const pipeline = writePipeline()
      const elsewhere = tempDir("elsewhere")
      const skill = path.join(pipeline.configDir, "skills", "orchestration")
      fs.cpSync(path.join(import.meta.dirname, "..", "..", "skills", "orchestration"), skill, { recursive: true })
      fs.rmSync(path.join(skill, "references", "domains"), { recursive: true, force: true })
      fs.symlinkSync(elsewhere, path.join(skill, "references", "domains"))
      const id = yield* insert({ prompt: "@say hi", config: { skill_overrides: { files: { "team.md": "x" } } } })
      yield* runOnce(pipeline.file)
      // The pipeline's own domains go through the same check, so this request fails before its overrides.
      expect(yield* outcomeOf(id)).toMatchObject({
        status: "error",
        error: expect.stringContaining("is a link leading out of the skill")
      })
      expect(fs.readdirSync(elsewhere)).toEqual([])
    })
  )

  it.effect("config of the wrong types, negative timeouts, model names that are not names, deep nesting", () =>
    expectRefused(
      {
        modelNumber: [{ prompt: "@say hi", config: { model: 7 } }, "invalid request config"],
        timeoutString: [{ prompt: "@say hi", config: { timeout_minutes: "5" } }, "invalid request config"],
        negativeTimeout: [
          { prompt: "@say hi", config: { timeout_minutes: -5 } },
          "timeout_minutes must be greater than 0"
        ],
        zeroTimeout: [{ prompt: "@say hi", config: { timeout_minutes: 0 } }, "timeout_minutes must be greater than 0"],
        endlessTimeout: [
          { prompt: "@say hi", config: { timeout_minutes: 1e9 } },
          "timeout_minutes must be at most 1440"
        ],
        turns: [{ prompt: "@say hi", config: { max_turns: 2.5 } }, "config.max_turns: Expected an integer"],
        budget: [{ prompt: "@say hi", config: { max_budget_usd: -1 } }, "max_budget_usd must be greater than 0"],
        modelFlag: [{ prompt: "@say hi", config: { model: "--dangerously-skip-permissions" } }, "a model is an alias"],
        modelShell: [{ prompt: "@say hi", config: { model: "opus; rm -rf /" } }, "a model is an alias"],
        modelPath: [{ prompt: "@say hi", config: { model: "../../bin/sh" } }, "a model is an alias"],
        unknownKey: [{ prompt: "@say hi", config: { timeout_minute: 5 } }, "timeout_minute"],
        notAnObject: [{ prompt: "@say hi", config: [1, 2, 3] }, "invalid request config"],
        overridesString: [{ prompt: "@say hi", config: { skill_overrides: "all" } }, "invalid request config"],
        deep: [
          { prompt: "@say hi", config: new RawJson(`{"skill_overrides":{"files":${nested(5_000)}}}`) },
          "invalid request config"
        ]
      },
      writePipeline().file
    )
  )
})
