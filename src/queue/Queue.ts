/**
 * The queue: claiming, releasing and recording requests. Every state change a worker makes is guarded by
 * `status = 'processing' AND claimed_by = <worker>`, so a worker that lost its claim (an operator released
 * it, another worker took it over) can never overwrite what the new owner does.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { ClaimedRequest } from "./Request.js"

export interface ResultRow {
  readonly requestId: string
  readonly attempt: number
  readonly workerId: string
  readonly status: "success" | "error" | "partial" | "timeout" | "cancelled"
  readonly output: unknown
  readonly prUrl: string | null
  readonly commitSha: string | null
  readonly branchName: string | null
  readonly durationMs: number
  readonly error: string | null
  readonly sessionId: string | null
  readonly model: string | null
  readonly numTurns: number | null
  readonly costUsd: number | null
  readonly usage: unknown
}

export type RecordOutcome = "recorded" | "already-recorded" | "not-owner"

export interface NewRequest {
  readonly prompt: string
  readonly repoUrl?: string | null | undefined
  readonly branch?: string | undefined
  readonly config?: unknown
  readonly metadata?: unknown
  readonly priority?: number | undefined
  readonly idempotencyKey?: string | undefined
}

export interface StatusCounts {
  readonly byStatus: ReadonlyArray<{ readonly status: string; readonly count: number }>
  readonly oldestPendingSeconds: number | null
}

export interface QueueService {
  /** Claims the next pending request for `workerId`, if there is one. */
  readonly claim: (workerId: string) => Effect.Effect<Option.Option<ClaimedRequest>, SqlError.SqlError>
  /** Puts a request this worker holds back to pending, not counting the attempt (a shutdown, not a failure). */
  readonly release: (requestId: string, workerId: string) => Effect.Effect<boolean, SqlError.SqlError>
  /** Writes the attempt's result row and the request's final status in one transaction. */
  readonly record: (result: ResultRow) => Effect.Effect<RecordOutcome, SqlError.SqlError>
  readonly enqueue: (request: NewRequest) => Effect.Effect<string, SqlError.SqlError>
  readonly status: Effect.Effect<StatusCounts, SqlError.SqlError>
}

const decodeRequest = Schema.decodeUnknown(ClaimedRequest)

/** JSON text for a jsonb parameter; PostgreSQL's jsonb cannot hold U+0000, so it is dropped. */
export const jsonParam = (value: unknown): string | null =>
  value === undefined || value === null ? null : JSON.stringify(value).replaceAll("\\u0000", "")

export const finalStatusOf = (status: ResultRow["status"]) =>
  status === "success" || status === "partial" ? "completed" : status === "cancelled" ? "cancelled" : "failed"

export class Queue extends Context.Tag("stageline/Queue")<Queue, QueueService>() {
  static readonly make = Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const claim: QueueService["claim"] = (workerId) =>
      sql`SELECT * FROM claim_next_request(${workerId})`.pipe(
        Effect.flatMap((rows) =>
          rows.length === 0
            ? Effect.succeed(Option.none())
            : decodeRequest(rows[0]).pipe(Effect.map(Option.some), Effect.orDie)
        ),
        Effect.withSpan("Queue.claim")
      )

    const release: QueueService["release"] = (requestId, workerId) =>
      sql`UPDATE orchestration_requests
             SET status = 'pending', claimed_at = NULL, claimed_by = NULL, attempts = greatest(attempts - 1, 0)
           WHERE id = ${requestId} AND status = 'processing' AND claimed_by = ${workerId}
       RETURNING id`.pipe(
        Effect.tap((rows) => (rows.length > 0 ? sql`SELECT pg_notify('stageline_requests', 'released')` : Effect.void)),
        Effect.map((rows) => rows.length > 0),
        Effect.withSpan("Queue.release")
      )

    const record: QueueService["record"] = (r) =>
      sql
        .withTransaction(
          Effect.gen(function* () {
            const updated = yield* sql`UPDATE orchestration_requests
                 SET status = ${finalStatusOf(r.status)}, finished_at = now(), last_error = ${r.error}
               WHERE id = ${r.requestId} AND status = 'processing' AND claimed_by = ${r.workerId}
           RETURNING id`
            if (updated.length === 0) {
              const existing = yield* sql`SELECT 1 FROM orchestration_results
                 WHERE request_id = ${r.requestId} AND attempt = ${r.attempt} AND worker_id = ${r.workerId}`
              return existing.length > 0 ? ("already-recorded" as const) : ("not-owner" as const)
            }
            yield* sql`INSERT INTO orchestration_results
                (request_id, attempt, worker_id, status, output, pr_url, commit_sha, branch_name, duration_ms,
                 error, session_id, model, num_turns, cost_usd, usage)
              VALUES (${r.requestId}, ${r.attempt}, ${r.workerId}, ${r.status}, ${jsonParam(r.output)}::jsonb,
                 ${r.prUrl}, ${r.commitSha}, ${r.branchName}, ${Math.round(r.durationMs)}, ${r.error},
                 ${r.sessionId}, ${r.model}, ${r.numTurns}, ${r.costUsd}, ${jsonParam(r.usage)}::jsonb)
              ON CONFLICT (request_id, attempt) DO NOTHING`
            return "recorded" as const
          })
        )
        .pipe(Effect.withSpan("Queue.record"))

    const enqueue: QueueService["enqueue"] = (q) =>
      Effect.gen(function* () {
        const inserted = yield* sql<{ id: string }>`INSERT INTO orchestration_requests
            (repo_url, branch, prompt, config, metadata, priority, idempotency_key)
          VALUES (${q.repoUrl ?? null}, ${q.branch ?? "main"}, ${q.prompt}, ${jsonParam(q.config)}::jsonb,
            ${jsonParam(q.metadata)}::jsonb, ${q.priority ?? 0}, ${q.idempotencyKey ?? null})
          ON CONFLICT (idempotency_key) DO NOTHING
          RETURNING id`
        if (inserted[0]) return inserted[0].id
        const existing = yield* sql<{ id: string }>`SELECT id FROM orchestration_requests
          WHERE idempotency_key = ${q.idempotencyKey ?? null}`
        return existing[0]!.id
      })

    const status: QueueService["status"] = Effect.gen(function* () {
      const byStatus = yield* sql<{ status: string; count: number }>`SELECT status, count(*)::int AS count
        FROM orchestration_requests GROUP BY status ORDER BY status`
      const oldest = yield* sql<{
        age: number | null
      }>`SELECT extract(epoch FROM now() - min(created_at))::float8 AS age
        FROM orchestration_requests WHERE status = 'pending'`
      return { byStatus, oldestPendingSeconds: oldest[0]?.age ?? null }
    })

    return { claim, release, record, enqueue, status } satisfies QueueService
  })

  static readonly layer = Layer.effect(Queue, Queue.make)
}
