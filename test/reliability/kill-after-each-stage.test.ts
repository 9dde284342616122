/**
 * The worker SIGKILLed right after each stage in turn: the events table says when a stage has finished
 * (the claim's own event for the claim), the worker is killed at once, and a fresh worker is started.
 * Whatever stage it died after, the request ends exactly once, with the agent's commit in its result, and
 * nothing the dead worker started (processes, workspaces) outlives the recovery.
 */
import * as path from "node:path"
import { afterAll, describe, expect, inject, it, onTestFinished } from "vitest"
import { runCli, waitFor } from "../support/cli.js"
import { makeBareRepo, stagesAfterClaim, tempDir, writePipeline } from "../support/harness.js"
import {
  audit,
  connect,
  insertRequests,
  ownDatabase,
  report,
  startWorker,
  waitUntilSettled,
  workerEnv
} from "./support/Fleet.js"

const stages = ["claim", ...stagesAfterClaim] as const

/**
 * Every stage with KILL_EVERY_STAGE=1 (`npm run soak` sets it); else the first after the claim, the agent's
 * and the last, which keeps `npm test` short.
 */
const stagesToKill: ReadonlyArray<(typeof stages)[number]> =
  process.env.KILL_EVERY_STAGE === "1" ? stages : ["prepare-workspace", "execute-mclaude", "record"]

/** Stages after which the agent has already run to its end: the next attempt runs it again. */
const agentDone = new Set(["execute-mclaude", "extract-git-artifacts"])

describe("the worker SIGKILLed after each stage", () => {
  const totals = { requests: 0, faults: 0, lost: 0, duplicated: 0, orphans: 0 }
  afterAll(() => report("kill-after-each-stage", totals))

  it.each(stagesToKill)(
    "after %s: killed, restarted, the request ends exactly once and correctly",
    async (stage) => {
      const database = await ownDatabase(inject("adminDatabaseUrl"))
      const db = connect(database.url)
      onTestFinished(async () => {
        await db.end().catch(() => {})
        await database.drop()
      })
      const env = workerEnv(database.url, {
        STAGELINE_LEASE_MS: "3000",
        STAGELINE_MAX_ATTEMPTS: "3",
        STAGELINE_RETRY_BACKOFF_MS: "0",
        POLL_INTERVAL_MS: "200"
      })
      const repo = makeBareRepo()
      const runsFile = path.join(tempDir("runs"), "runs.log")
      expect((await runCli(["migrate"], env)).code).toBe(0)
      const pipeline = writePipeline()
      const [id] = await insertRequests(db, [{ prompt: "placeholder", repo_url: repo.url }])
      await db.query("UPDATE orchestration_requests SET prompt = $2 WHERE id = $1", [
        id,
        `@write notes.md written by the agent\n@commit add notes\n@sleep 200\n@append ${runsFile} ${id}`
      ])

      const doomed = startWorker(pipeline.file, `doomed-${stage}`, env)
      const kind = stage === "claim" ? "claimed" : "stage-finished"
      await waitFor(
        `stage ${stage} to finish`,
        async () =>
          (
            await db.query("SELECT 1 FROM orchestration_events WHERE request_id = $1 AND kind = $2 AND stage = $3", [
              id,
              kind,
              stage
            ])
          ).rows.length > 0,
        60_000
      )
      doomed.child.kill("SIGKILL")
      await doomed.exited
      const landed = (
        await db.query<{ kind: string; stage: string }>(
          "SELECT kind, stage FROM orchestration_events WHERE request_id = $1 ORDER BY id DESC LIMIT 1",
          [id]
        )
      ).rows[0]

      const next = startWorker(pipeline.file, `next-${stage}`, env)
      // Killed after record the request is already final: what is left is the restarted worker's to sweep.
      await waitFor("the restarted worker to run", async () => next.output().includes("running pipeline"), 90_000)
      await waitUntilSettled(db, 60_000)
      // The dead worker's leftovers are removed by the rescue loop of the live one, within the audit's grace.
      const result = await audit(db, {
        workers: [doomed],
        workspaceBase: env.WORKSPACE_BASE,
        ...(agentDone.has(stage) ? {} : { runsFile })
      })
      const rows = (
        await db.query<{ attempt: number; status: string; commit_sha: string | null }>(
          "SELECT attempt, status, commit_sha FROM orchestration_results WHERE request_id = $1 ORDER BY attempt",
          [id]
        )
      ).rows
      const request = (await db.query("SELECT status FROM orchestration_requests WHERE id = $1", [id])).rows[0]
      expect((await next.stop()).code).toBe(0)

      totals.requests++
      totals.faults++
      totals.lost += result.lost
      totals.duplicated += result.duplicated
      totals.orphans += result.orphans
      expect([stage, landed?.kind]).toEqual([stage, expect.any(String)])
      expect(result.problems).toEqual([])
      expect(request).toEqual({ status: "completed" })
      const success = rows.filter((r) => r.status === "success")
      expect(success).toHaveLength(1)
      expect(success[0]!.commit_sha).toMatch(/^[0-9a-f]{40}$/)
      expect(success[0]!.commit_sha).not.toBe(repo.baseSha)
      // One result per attempt: the lost attempt says so, unless the kill came after it was recorded.
      expect(rows.map((r) => r.attempt)).toEqual(rows.map((_, i) => i + 1))
      if (stage === "record") expect(rows).toHaveLength(1)
    },
    120_000
  )
})
