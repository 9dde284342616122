/**
 * The workspace disk full: WORKSPACE_BASE on a tmpfs of 1 MiB (mounted for the test; this needs root, as
 * CI and these machines have). A repository that does not fit fails its request with the reason, leaves
 * nothing behind that would keep the disk full, and the worker goes on with requests that fit.
 */
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { afterAll } from "vitest"
import { makeBareRepo, runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"
import { leftoverWorkspaces, report } from "./support/Fleet.js"

const mountTmpfs = (dir: string, size: string) => {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const usedBytes = (dir: string) => {
  const s = fs.statfsSync(dir)
  return (s.blocks - s.bfree) * s.bsize
}

/** A bare repository holding `bytes` of incompressible data. */
const bigRepo = (bytes: number) => {
  const root = tempDir("big-repo")
  const work = path.join(root, "work")
  const git = (cwd: string, ...args: Array<string>) =>
    execFileSync("git", ["-c", "user.name=T", "-c", "user.email=t@example.invalid", ...args], { cwd })
  fs.mkdirSync(work)
  git(work, "init", "-q", "-b", "main")
  fs.writeFileSync(path.join(work, "blob.bin"), crypto.randomBytes(bytes))
  git(work, "add", "-A")
  git(work, "commit", "-q", "-m", "a big file")
  git(root, "clone", "-q", "--bare", work, path.join(root, "big.git"))
  return `file://${path.join(root, "big.git")}`
}

const base = tempDir("full-disk")
const mounted = mountTmpfs(base, "1m")
afterAll(() => {
  if (mounted) execFileSync("umount", ["-l", base], { stdio: "ignore" })
})

layer(TestDatabase, { excludeTestServices: true, timeout: "90 seconds" })(
  "the workspace disk full (tmpfs of 1 MiB)",
  (it) => {
    it.effect.skipIf(!mounted)("fails the request that does not fit, frees the space, and the next ones run", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const insert = (prompt: string, repoUrl: string | null) =>
          sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, repo_url)
          VALUES (${prompt}, ${repoUrl}) RETURNING id`.pipe(Effect.map((r) => r[0]!.id))
        const big = bigRepo(3 * 1024 * 1024)
        const small = makeBareRepo()
        // Through the mirror cache first, then cloning directly: each fills the disk on its own path.
        const viaMirror = yield* insert("@say never", big)
        const fits = yield* insert("@write notes.md hello\n@commit notes", small.url)
        const noRepo = yield* insert("@say fine", null)
        const first = yield* runOnce(writePipeline().file, { workspaceBase: base })
        const direct = yield* insert("@say never", big)
        const fitsDirect = yield* insert("@write notes.md hello\n@commit notes", small.url)
        const second = yield* runOnce(
          writePipeline({
            stages:
              "\n  - claim\n  - use: prepare-workspace\n    with: { mirror_cache: false }\n  - execute-mclaude\n  - record\n"
          }).file,
          { workspaceBase: base }
        )
        const outcome = (id: string) =>
          sql<{ status: string; error: string | null }>`SELECT status, error FROM orchestration_results
          WHERE request_id = ${id}`.pipe(Effect.map((r) => r[0]))
        report("disk-full", {
          requests: first.processed + second.processed,
          faults: 2,
          usedAfter: usedBytes(base),
          leftovers: leftoverWorkspaces(base).length
        })
        for (const id of [viaMirror, direct]) {
          expect(yield* outcome(id)).toEqual({
            status: "error",
            error: expect.stringMatching(/No space left on device/i)
          })
        }
        expect((yield* outcome(fits))?.status).toBe("success")
        expect((yield* outcome(fitsDirect))?.status).toBe("success")
        expect((yield* outcome(noRepo))?.status).toBe("success")
        expect(leftoverWorkspaces(base)).toEqual([])
        expect(usedBytes(base)).toBeLessThan(256 * 1024)
      })
    )
  }
)
