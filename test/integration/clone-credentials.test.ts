/**
 * Cloning with the worker's credentials: a token over HTTP(S) to the hosts allowed, a key over SSH, and
 * neither ever written where it could leak.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { withEnv } from "../support/env.js"
import { gitHttpServer } from "../support/gitHttpServer.js"
import { makeBareRepo, runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

const token = "ghp_TESTTOKEN0123456789abcdef"
const stages = "\n  - claim\n  - prepare-workspace\n  - execute-mclaude\n  - extract-git-artifacts\n  - record\n"

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("cloning with credentials", (it) => {
  it.scoped("sends GH_TOKEN to an allowed host, and never writes it into the clone, a log or a row", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const repo = makeBareRepo()
      const server = yield* gitHttpServer(path.dirname(repo.path), token)
      const host = new URL(server.url).host
      const url = `${server.url}/${path.basename(repo.path)}`
      const workspaceBase = tempDir("ws")
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
        VALUES (${url}, ${"@ls"}) RETURNING id`
      yield* withEnv(
        { GH_TOKEN: token, GIT_TOKEN_HOSTS: host },
        runOnce(writePipeline({ stages }).file, { workspaceBase, cleanupAfterComplete: false })
      )
      const [result] = yield* sql<{ status: string; error: string | null; everything: string }>`
        SELECT status, error, row_to_json(r)::text AS everything FROM orchestration_results r WHERE request_id = ${row!.id}`
      expect(result!.error).toBeNull()
      expect(result!.status).toBe("success")
      expect(server.authorizations.some((a) => a?.startsWith("Basic "))).toBe(true)
      // The clone's config and the result row hold no trace of the token.
      const clone = path.join(workspaceBase, `${row!.id}-a1`)
      expect(fs.readFileSync(path.join(clone, ".git", "config"), "utf8")).not.toContain(token)
      expect(execFileSync("git", ["remote", "get-url", "origin"], { cwd: clone }).toString().trim()).toBe(url)
      expect(result!.everything).not.toContain(token)
    })
  )

  it.scoped("offers no token to a host outside GIT_TOKEN_HOSTS", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const repo = makeBareRepo()
      const server = yield* gitHttpServer(path.dirname(repo.path), token)
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
        VALUES (${`${server.url}/${path.basename(repo.path)}`}, ${"@ls"}) RETURNING id`
      yield* withEnv({ GH_TOKEN: token, GIT_TOKEN_HOSTS: "github.com" }, runOnce(writePipeline({ stages }).file))
      const [result] = yield* sql<{ status: string; error: string }>`SELECT status, error FROM orchestration_results
        WHERE request_id = ${row!.id}`
      expect(result!.status).toBe("error")
      expect(result!.error).toContain("git clone failed")
      expect(server.authorizations.every((a) => a === undefined)).toBe(true)
    })
  )

  it.effect("clones over SSH with SSH_PRIVATE_KEY in a private 0600 file, removed afterwards", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const repo = makeBareRepo()
      // An `ssh` that runs the remote git command locally, after checking how it was called: the real
      // git transport, with no server.
      const bin = tempDir("ssh-bin")
      const record = path.join(bin, "calls.jsonl")
      fs.writeFileSync(
        path.join(bin, "ssh"),
        `#!/usr/bin/env node
const fs = require("node:fs")
const args = process.argv.slice(2)
const key = args[args.indexOf("-i") + 1]
const mode = (fs.statSync(key).mode & 0o777).toString(8)
fs.appendFileSync(${JSON.stringify(record)}, JSON.stringify({ args, key, mode, content: fs.readFileSync(key, "utf8") }) + "\\n")
const command = args[args.length - 1]
require("node:child_process").execFileSync("sh", ["-c", command], { stdio: "inherit" })
`
      )
      fs.chmodSync(path.join(bin, "ssh"), 0o755)
      const key = "-----BEGIN OPENSSH PRIVATE KEY-----\\nAAAAtestkey\\n-----END OPENSSH PRIVATE KEY-----"
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
        VALUES (${`git@repo.example.invalid:${repo.path}`}, ${"@ls"}) RETURNING id`
      yield* withEnv(
        { SSH_PRIVATE_KEY: key, PATH: `${bin}:${process.env.PATH}` },
        runOnce(writePipeline({ stages }).file)
      )
      const [result] = yield* sql<{ status: string; error: string | null; everything: string }>`
        SELECT status, error, row_to_json(r)::text AS everything FROM orchestration_results r WHERE request_id = ${row!.id}`
      expect(result!.error).toBeNull()
      expect(result!.status).toBe("success")
      const call = JSON.parse(fs.readFileSync(record, "utf8").split("\n")[0]!)
      expect(call.mode).toBe("600")
      expect(call.content).toBe("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAtestkey\n-----END OPENSSH PRIVATE KEY-----\n")
      expect(call.args).toEqual(expect.arrayContaining(["IdentitiesOnly=yes", "StrictHostKeyChecking=accept-new"]))
      expect(fs.existsSync(call.key)).toBe(false)
      // Never where the agent keeps its files: its TMPDIR is the run's .tmp folder.
      expect(call.key).toContain(`${path.sep}.secrets${path.sep}`)
      expect(call.key).not.toContain(`${path.sep}.tmp${path.sep}`)
      expect(result!.everything).not.toContain("AAAAtestkey")
    })
  )
})
