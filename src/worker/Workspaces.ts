/**
 * Workspaces left behind by a worker that was killed: at start, every workspace (and private temp dir)
 * whose request attempt is not running any more is removed, when workspaces are cleaned up at all
 * (`CLEANUP_AFTER_COMPLETE`; a kept workspace is the operator's to remove). Credential folders of runs
 * that ended are removed always.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { WorkerConfig } from "../config/WorkerConfig.js"

const workspaceName = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-a(\d+)$/

export const reclaimAbandonedWorkspaces = Effect.gen(function* () {
  const { workspaceBase, cleanupAfterComplete } = yield* WorkerConfig
  const sql = yield* SqlClient.SqlClient
  const found: Array<{ dir: string; id: string; attempt: number }> = []
  // Credentials a killed run left are removed whatever the cleanup setting; workspaces only when it is on.
  const bases = [
    path.join(workspaceBase, ".secrets"),
    ...(cleanupAfterComplete ? [workspaceBase, path.join(workspaceBase, ".tmp")] : [])
  ]
  for (const base of bases) {
    const entries = yield* Effect.promise(() => fs.readdir(base).catch(() => [] as Array<string>))
    for (const entry of entries) {
      const match = workspaceName.exec(entry)
      if (match) found.push({ dir: path.join(base, entry), id: match[1]!, attempt: Number(match[2]) })
    }
  }
  if (found.length === 0) return 0
  const running = yield* sql<{
    id: string
    attempts: number
  }>`SELECT id::text AS id, attempts FROM orchestration_requests
    WHERE status = 'processing' AND id::text IN ${sql.in([...new Set(found.map((f) => f.id))])}`
  const live = new Set(running.map((r) => `${r.id}-a${r.attempts}`))
  const abandoned = found.filter((f) => !live.has(`${f.id}-a${f.attempt}`))
  yield* Effect.forEach(
    abandoned,
    (f) => Effect.promise(() => fs.rm(f.dir, { recursive: true, force: true }).catch(() => {})),
    { discard: true, concurrency: 4 }
  )
  if (abandoned.length > 0) yield* Effect.logInfo(`removed ${abandoned.length} workspace(s) left by runs that ended`)
  return abandoned.length
})
