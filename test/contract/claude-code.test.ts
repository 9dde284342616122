/**
 * The real Claude Code CLI (the pinned @anthropic-ai/claude-code binary) driven by the real engine, with
 * only the model behind it scripted: a local Messages API server on 127.0.0.1. Nothing leaves the machine.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type Conversation, ScriptedModel, type Turn } from "../../src/model/ScriptedModel.js"
import { makeBareRepo, runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

/** Processes whose working directory is inside `dir` (the agent and anything it started ran there). */
const processesIn = (dir: string) =>
  fs.readdirSync("/proc").filter((entry) => {
    try {
      return /^\d+$/.test(entry) && fs.readlinkSync(`/proc/${entry}/cwd`).startsWith(dir)
    } catch {
      return false
    }
  })

const require = createRequire(import.meta.url)
const claudePackage = path.dirname(require.resolve("@anthropic-ai/claude-code/package.json"))
const claude = path.join(claudePackage, "bin", "claude.exe")
const claudeVersion = (require("@anthropic-ai/claude-code/package.json") as { version: string }).version
const installScript = path.join(import.meta.dirname, "..", "..", "scripts", "install-mclaude.sh")
const binDir = path.join(import.meta.dirname, "..", "..", "node_modules", ".bin")

const domainMarker = "ACME-DOMAIN-7731: reviews check every SQL statement for parameterisation"

/** One conversation per scenario, chosen by a tag in the prompt. */
const script = (conversation: Conversation): ReadonlyArray<Turn> => {
  const tag = /\[(\w[\w-]*)\]/.exec(conversation.prompt)?.[1]
  switch (tag) {
    case "commit":
      return [
        {
          tools: [
            {
              name: "Bash",
              input: {
                // The background sleep outlives the command: stageline must end it with the run.
                command:
                  "mkdir -p review && echo 'looks fine' > review/notes.md && git add -A && git -c user.name=Agent -c user.email=agent@example.invalid commit -q -m 'Add review notes' && (setsid sleep 300 > /dev/null 2>&1 &)",
                description: "Write the review notes and commit them"
              }
            }
          ]
        },
        { text: "Committed the review. See https://github.com/acme/widgets/pull/42" }
      ]
    case "read-domain": {
      const file = /domain file: (\S+)/.exec(conversation.prompt)?.[1] ?? ""
      return [{ tools: [{ name: "Read", input: { file_path: file } }] }, { text: "I read the domain guide." }]
    }
    case "http-500":
      return [{ error: { status: 500, type: "api_error", message: "scripted internal error" } }]
    case "http-529":
      return [{ error: { status: 529, type: "overloaded_error", message: "scripted overload" } }]
    case "own-config":
      return [
        {
          tools: [
            {
              name: "Bash",
              input: {
                command: 'cat "$CLAUDE_CONFIG_DIR/skills/orchestration/references/domains/acme-private.md"',
                description: "Read the request's own domain file"
              }
            }
          ]
        },
        { text: "I read the request's own guide." }
      ]
    case "deny":
      return [
        { tools: [{ name: "Bash", input: { command: "touch should-not-exist", description: "Try something" } }] },
        { text: "I could not run the command." }
      ]
    default:
      return [{ text: `Hello from the scripted model (${conversation.model}).` }]
  }
}

interface Row {
  readonly status: string
  readonly error: string | null
  readonly commit_sha: string | null
  readonly pr_url: string | null
  readonly session_id: string | null
  readonly num_turns: number | null
  readonly cost_usd: string | null
  readonly model: string | null
  readonly usage: Record<string, unknown> | null
  readonly output: { result: Record<string, unknown> | null; git: { commits: Array<{ sha: string; subject: string }> } }
}

const TestLayer = Layer.merge(TestDatabase, ScriptedModel.layer(script))

layer(TestLayer, { excludeTestServices: true, timeout: "120 seconds" })("the real Claude Code CLI", (it) => {
  const setup = (
    options: {
      readonly permissionMode?: string
      readonly stages?: string
      readonly command?: string
      readonly configDir?: string
    } = {}
  ) =>
    Effect.gen(function* () {
      const model = yield* ScriptedModel
      const pipeline = writePipeline({
        command: options.command ?? claude,
        ...(options.configDir ? { configDir: options.configDir } : {}),
        agent: `  permission_mode: ${options.permissionMode ?? "bypassPermissions"}
  env:
    ANTHROPIC_BASE_URL: "${model.url}"
    ANTHROPIC_AUTH_TOKEN: scripted-token
    CLAUDE_CODE_MAX_RETRIES: "0"
    DISABLE_TELEMETRY: "1"
    DISABLE_AUTOUPDATER: "1"
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1"`,
        ...(options.stages ? { stages: options.stages } : {})
      })
      return { model, pipeline }
    })

  const insert = (prompt: string, fields: { repo_url?: string; config?: unknown } = {}) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, repo_url, config)
        VALUES (${prompt}, ${fields.repo_url ?? null}, ${fields.config === undefined ? null : JSON.stringify(fields.config)}::jsonb)
        RETURNING id`.pipe(Effect.map((r) => r[0]!.id))
    )
  const result = (id: string) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<Row>`SELECT * FROM orchestration_results WHERE request_id = ${id}`.pipe(Effect.map((r) => r[0]!))
    )

  it.effect("records the CLI's JSON result, and the commit a scripted Bash call made in the workspace", () =>
    Effect.gen(function* () {
      const { model, pipeline } = yield* setup()
      const repo = makeBareRepo()
      const workspaceBase = tempDir("ws")
      const sharedTmpBefore = new Set(fs.readdirSync(os.tmpdir()))
      const id = yield* insert("[commit] Review the repository and commit your notes.", {
        repo_url: repo.url,
        config: { model: "opus" }
      })
      yield* runOnce(pipeline.file, { workspaceBase })
      const row = yield* result(id)

      // (a) the JSON result lands in the row
      expect(row.error).toBeNull()
      expect(row.status).toBe("success")
      expect(row.session_id).toMatch(/^[0-9a-f-]{36}$/)
      expect(row.num_turns).toBe(2)
      expect(Number(row.cost_usd)).toBeGreaterThan(0)
      expect(row.usage).toMatchObject({ input_tokens: expect.any(Number), output_tokens: expect.any(Number) })
      expect(row.model).toMatch(/opus/)
      expect(row.output.result).toMatchObject({ type: "result", subtype: "success", is_error: false })
      // (b) the Bash call ran in the clone, and extract-git-artifacts reports its commit
      expect(row.output.git.commits).toHaveLength(1)
      expect(row.output.git.commits[0]!.subject).toBe("Add review notes")
      expect(row.commit_sha).toBe(row.output.git.commits[0]!.sha)
      expect(row.pr_url).toBe("https://github.com/acme/widgets/pull/42")
      // (e) the request's model reached the endpoint, resolved by the CLI from its alias
      const turns = model.turns().filter((t) => JSON.stringify(t.body).includes("[commit]"))
      expect(turns).toHaveLength(2)
      for (const t of turns) expect(String(t.body!.model)).toMatch(/opus/)
      expect(turns[0]!.headers.authorization).toBe("Bearer scripted-token")
      // (g) the run's TMPDIR was private and is gone; nothing new in the shared one; no process left
      expect(fs.readdirSync(path.join(workspaceBase, ".tmp"))).toEqual([])
      const newInShared = fs.readdirSync(os.tmpdir()).filter((e) => !sharedTmpBefore.has(e) && /claude/i.test(e))
      expect(newInShared).toEqual([])
      expect(processesIn(workspaceBase)).toEqual([])
      // The CLI's stream-json steps reached the events table as it ran.
      const sql = yield* SqlClient.SqlClient
      const steps = yield* sql<{ message: string }>`SELECT message FROM orchestration_events
        WHERE request_id = ${id} AND kind = 'agent' ORDER BY id`
      expect(steps[0]!.message).toMatch(/^agent started \(model claude-opus/)
      expect(steps.map((s) => s.message)).toContain("uses Bash: Write the review notes and commit them")
      expect(steps.at(-1)!.message).toBe("finished: success, 2 turns")
    })
  )

  it.effect("lists the skill customize-skill installed to the model, with the pipeline's domain file in it", () =>
    Effect.gen(function* () {
      const domainsDir = tempDir("domains")
      fs.writeFileSync(
        path.join(domainsDir, "acme-review.md"),
        `# ACME review\n\n> **Load when**: always\n\n${domainMarker}\n`
      )
      const { model, pipeline } = yield* setup({
        stages: `
  - claim
  - prepare-workspace
  - use: customize-skill
    with:
      skill: orchestration
      domains: [code-review, ${path.join(domainsDir, "acme-review.md")}]
  - execute-mclaude
  - record
`
      })
      const domainFile = path.join(
        pipeline.configDir,
        "skills",
        "orchestration",
        "references",
        "domains",
        "acme-review.md"
      )
      const id = yield* insert(`[read-domain] Read the domain file: ${domainFile}`)
      yield* runOnce(pipeline.file)
      expect((yield* result(id)).status).toBe("success")
      const turns = model.turns().filter((t) => JSON.stringify(t.body).includes("[read-domain]"))
      // The skill is announced to the model at start-up, by the name and description in its SKILL.md...
      const first = JSON.stringify(turns[0]!.body)
      expect(first).toContain("orchestration")
      expect(first).toContain("How to plan and carry out a multi-step task as an automated worker")
      // ...and the overlaid domain file is what the agent reads from it.
      expect(JSON.stringify(turns[1]!.body)).toContain(domainMarker)
    })
  )

  it.effect("ends an HTTP 500 or 529 from the API as error with the CLI's message", () =>
    Effect.gen(function* () {
      const { pipeline } = yield* setup()
      const failing500 = yield* insert("[http-500] anything")
      const failing529 = yield* insert("[http-529] anything")
      // With CLAUDE_CODE_MAX_RETRIES=0 the CLI gives up at once; with its default it would retry for minutes.
      yield* runOnce(pipeline.file, { workerCount: 2 })
      for (const id of [failing500, failing529]) {
        const row = yield* result(id)
        expect(row.status).toBe("error")
        expect(row.error).toMatch(/the agent reported an error: .*(500|529|scripted|overload|API Error)/i)
      }
    })
  )

  it.effect("never reports a permission denial as success", () =>
    Effect.gen(function* () {
      const { pipeline } = yield* setup({ permissionMode: "default" })
      const id = yield* insert("[deny] Run a command.")
      yield* runOnce(pipeline.file)
      const row = yield* result(id)
      expect(row.status).not.toBe("success")
      expect(row.status).toBe("partial")
      expect(row.error).toContain("denied permission")
      expect(row.error).toContain("Bash")
    })
  )

  it.effect("passes each model form a request may name to the endpoint", () =>
    Effect.gen(function* () {
      const { model, pipeline } = yield* setup()
      // (The CLI maps retired ids to current ones, so the full id is a current one.)
      const forms = { haiku: /haiku/, sonnet: /sonnet/, "claude-haiku-5-5": /^claude-haiku-5-5$/ }
      const ids: Record<string, string> = {}
      for (const name of Object.keys(forms))
        ids[name] = yield* insert(`[hello] model ${name}`, { config: { model: name } })
      yield* runOnce(pipeline.file, { workerCount: 3 })
      for (const [name, pattern] of Object.entries(forms)) {
        expect((yield* result(ids[name]!)).status).toBe("success")
        const turn = model.turns().find((t) => JSON.stringify(t.body).includes(`model ${name}`))
        expect(String(turn!.body!.model)).toMatch(pattern)
      }
    })
  )
  it.effect("runs as cc-mirror's mclaude variant, made offline, and a request's own skill files reach it", () =>
    Effect.gen(function* () {
      // The variant exactly as the container image makes it: cc-mirror fed the npm binary by a local server.
      const home = tempDir("variant-home")
      const made = spawnSync("sh", [installScript, claude, claudeVersion], {
        env: { ...process.env, HOME: home, PATH: `${binDir}:${process.env.PATH}` },
        encoding: "utf8"
      })
      expect(made.status, made.stderr).toBe(0)
      const mclaude = path.join(home, ".local", "bin", "mclaude")
      const configDir = path.join(home, ".cc-mirror", "mclaude", "config")
      expect(spawnSync(mclaude, ["--version"], { encoding: "utf8" }).stdout).toContain(claudeVersion)

      const { model, pipeline } = yield* setup({ command: mclaude, configDir })
      const plain = yield* insert("[hello] through the wrapper")
      const own = yield* insert("[own-config] Read your own guide.", {
        config: { skill_overrides: { files: { "acme-private.md": `# Private\n\n${domainMarker}\n` } } }
      })
      yield* runOnce(pipeline.file, { workerCount: 2 })
      expect((yield* result(plain)).status).toBe("success")
      expect((yield* result(own)).status).toBe("success")
      // The wrapper forces the variant's config dir; the request's own one reached the agent all the same.
      const turns = model.turns().filter((t) => JSON.stringify(t.body).includes("[own-config]"))
      expect(turns).toHaveLength(2)
      expect(JSON.stringify(turns[1]!.body)).toContain(domainMarker)
      // The shared config dir never saw the request's file.
      expect(
        fs.existsSync(path.join(configDir, "skills", "orchestration", "references", "domains", "acme-private.md"))
      ).toBe(false)
    })
  )
})
