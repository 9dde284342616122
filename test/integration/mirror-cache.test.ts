import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { mirrorPath } from "../../src/git/MirrorCache.js"
import { makeBareRepo, runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

const git = (cwd: string, ...args: Array<string>) =>
  execFileSync("git", ["-c", "user.name=T", "-c", "user.email=t@example.invalid", ...args], { cwd })
    .toString()
    .trim()

layer(TestDatabase, { excludeTestServices: true, timeout: "90 seconds" })("the mirror cache", (it) => {
  const insert = (repoUrl: string, prompt = "@ls") =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{
        id: string
      }>`INSERT INTO orchestration_requests (repo_url, prompt) VALUES (${repoUrl}, ${prompt}) RETURNING id`.pipe(
        Effect.map((r) => r[0]!.id)
      )
    )
  const outcome = (id: string) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{
        status: string
        error: string | null
        text: string
      }>`SELECT status, error, output->'result'->>'result' AS text
        FROM orchestration_results WHERE request_id = ${id}`.pipe(Effect.map((r) => r[0]!))
    )

  it.effect("fetches a repository seen before into its mirror, so the next workspace has what was pushed since", () =>
    Effect.gen(function* () {
      const repo = makeBareRepo()
      const base = tempDir("ws")
      const pipeline = writePipeline()
      const first = yield* insert(repo.url)
      yield* runOnce(pipeline.file, { workspaceBase: base })
      expect((yield* outcome(first)).text).toBe('ls=[".git","README.md"]')
      const mirror = mirrorPath(path.join(base, ".mirrors"), repo.url)
      expect(fs.existsSync(path.join(mirror, "HEAD"))).toBe(true)

      // Someone pushes a new file to the remote.
      const other = tempDir("other")
      git(other, "clone", "-q", repo.url, "c")
      fs.writeFileSync(path.join(other, "c", "NEW.md"), "new\n")
      git(path.join(other, "c"), "add", "-A")
      git(path.join(other, "c"), "commit", "-q", "-m", "new file")
      git(path.join(other, "c"), "push", "-q", "origin", "main")

      const second = yield* insert(repo.url)
      yield* runOnce(pipeline.file, { workspaceBase: base, cleanupAfterComplete: false })
      expect((yield* outcome(second)).text).toBe('ls=[".git","NEW.md","README.md"]')
      // The workspace's origin is the real remote, not the mirror.
      expect(git(path.join(base, `${second}-a1`), "remote", "get-url", "origin")).toBe(repo.url)
    })
  )

  it.effect("serves many requests on one repository at once without corrupting the mirror", () =>
    Effect.gen(function* () {
      const repo = makeBareRepo()
      const base = tempDir("ws")
      const ids = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => insert(repo.url))
      yield* runOnce(writePipeline().file, { workspaceBase: base, workerCount: 4 })
      for (const id of ids) expect(yield* outcome(id)).toMatchObject({ status: "success", error: null })
      const mirror = mirrorPath(path.join(base, ".mirrors"), repo.url)
      expect(() => execFileSync("git", ["fsck", "--strict"], { cwd: mirror, stdio: "pipe" })).not.toThrow()
      expect(
        fs.readdirSync(path.join(base, ".mirrors")).filter((e) => e.endsWith(".lock") || e.endsWith(".tmp"))
      ).toEqual([])
    })
  )

  it.effect("breaks a lock left by a process that is gone", () =>
    Effect.gen(function* () {
      const repo = makeBareRepo()
      const base = tempDir("ws")
      const lockDir = `${mirrorPath(path.join(base, ".mirrors"), repo.url)}.lock`
      fs.mkdirSync(lockDir, { recursive: true })
      // A pid that is not running: the lock's owner died holding it.
      fs.writeFileSync(path.join(lockDir, "owner"), "999999999")
      const id = yield* insert(repo.url)
      yield* runOnce(writePipeline().file, { workspaceBase: base })
      expect((yield* outcome(id)).status).toBe("success")
    })
  )
})
