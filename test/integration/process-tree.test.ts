/**
 * What a program leaves behind when it exits on its own: ended before runSubprocess returns, whether it
 * stayed in the program's process group or left it with setsid (found then by the run's marker, among the
 * processes started after the program).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { findMarked, spawnPoint } from "../../src/process/ProcessTree.js"
import { runSubprocess } from "../../src/process/Subprocess.js"
import { isRunning } from "../support/processes.js"

const run = (script: string) =>
  Effect.gen(function* () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stageline-tree-"))
    const pids = path.join(dir, "pids")
    const result = yield* runSubprocess({
      command: "/bin/sh",
      args: ["-c", script.replaceAll("PIDS", pids)],
      cwd: dir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      outputLimitBytes: 64 * 1024,
      killGraceMs: 1_000
    }).pipe(Effect.provide(NodeContext.layer))
    const left = fs.readFileSync(pids, "utf8").split(/\s+/).filter(Boolean).map(Number).filter(isRunning)
    fs.rmSync(dir, { recursive: true, force: true })
    return { result, left }
  })

describe("a program that exits leaving processes behind", () => {
  it.live("has them ended when it is done, in its group or in a session of their own", () =>
    Effect.gen(function* () {
      const { result, left } = yield* run(
        "sleep 300 >/dev/null 2>&1 & echo $! >> PIDS; " +
          "setsid sh -c 'echo $$ >> PIDS; exec sleep 300' >/dev/null 2>&1 & " +
          "while [ $(wc -l < PIDS) -lt 2 ]; do sleep 0.01; done; echo started"
      )
      expect(result.exitCode).toBe(0)
      expect(result.stdout.text.trim()).toBe("started")
      expect(left).toEqual([])
    })
  )

  it.live("finds a marked process started after a point, and not one started before it", () =>
    Effect.gen(function* () {
      const token = crypto.randomUUID()
      const env = { ...process.env, STAGELINE_RUN_TOKEN: token }
      const { spawn } = yield* Effect.promise(() => import("node:child_process"))
      const before = spawn("sleep", ["300"], { env, stdio: "ignore", detached: true })
      const point = spawnPoint()
      const leader = spawn("sleep", ["300"], { stdio: "ignore", detached: true })
      const after = spawn("sleep", ["300"], { env, stdio: "ignore", detached: true })
      try {
        const found = findMarked(token, { pid: leader.pid!, point })
        expect(found).toContain(after.pid)
        // Where /proc says how pids are handed out, the earlier one is not even looked at.
        if (point !== null) expect(found).not.toContain(before.pid)
        expect(findMarked(token)).toEqual(expect.arrayContaining([before.pid, after.pid]))
      } finally {
        for (const child of [before, leader, after]) child.kill("SIGKILL")
      }
    })
  )
})
