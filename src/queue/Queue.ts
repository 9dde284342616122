/**
 * The queue: claiming, releasing and recording requests. Every state change a worker makes is guarded by
 * `status = 'processing' AND claimed_by = <worker>`, so a worker that lost its claim (an operator released
 * it, another worker took it over) can never overwrite what the new owner does.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlError from "@effect/sql/SqlError"
import { Context, Effect, Layer, Option, Schema } from "effect"
import * as Metrics from "../metrics/Metrics.js"
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

/** What record did with the request: finished it, put it back for another attempt, or found it not ours. */
export type RecordOutcome = "recorded" | "retrying" | "already-recorded" | "not-owner"

/** Whether a failed attempt may be tried again, and when. */
export interface RetryPolicy {
  readonly retryable: boolean
  /** Used when the request's own max_attempts is null. */
  readonly maxAttempts: number
  /** Before the second attempt; doubled for each one after. */
  readonly backoffMs: number
}

/** What a heartbeat found: the request is still ours, was cancelled, or is no longer ours. */
export type LeaseState = "held" | "cancelled" | "lost"

export interface Rescued {
  readonly id: string
  readonly status: string
  readonly attempt: number
  readonly claimed_by: string | null
}

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
  /** Claims the next pending request for `workerId` with a lease of `leaseMs`, if there is one. */
  readonly claim: (workerId: string, leaseMs: number) => Effect.Effect<Option.Option<ClaimedRequest>, SqlError.SqlError>
  /** Renews the lease (and notes the stage the request is in). */
  readonly heartbeat: (
    requestId: string,
    workerId: string,
    leaseMs: number,
    stage: string | null
  ) => Effect.Effect<LeaseState, SqlError.SqlError>
  /** Puts back (or fails) requests whose lease ran out, with a result row for each lost attempt. */
  readonly rescue: (
    maxAttempts: number,
    backoffMs: number,
    retryCrashes: boolean
  ) => Effect.Effect<ReadonlyArray<Rescued>, SqlError.SqlError>
  /** Puts a request this worker holds back to pending, not counting the attempt (a shutdown, not a failure). */
  readonly release: (requestId: string, workerId: string) => Effect.Effect<boolean, SqlError.SqlError>
  /**
   * Writes the attempt's result row and the request's next status in one transaction: final, or back to
   * pending after a backoff when the attempt failed, may be retried, and has attempts left.
   */
  readonly record: (result: ResultRow, retry: RetryPolicy) => Effect.Effect<RecordOutcome, SqlError.SqlError>
  readonly enqueue: (request: NewRequest) => Effect.Effect<string, SqlError.SqlError>
  readonly status: Effect.Effect<StatusCounts, SqlError.SqlError>
}

const decodeRequest = Schema.decodeUnknown(ClaimedRequest)

/**
 * Text PostgreSQL accepts, from text an agent printed: text and jsonb columns cannot hold U+0000, and jsonb
 * refuses a lone UTF-16 surrogate (what a decoder makes of bytes that were not UTF-8 stays well-formed, but
 * JSON the agent printed may escape one), so NUL is dropped and a lone surrogate becomes U+FFFD.
 */
export const cleanText = (text: string): string =>
  text.replaceAll("\0", "").replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")

const cleanNullable = (text: string | null): string | null => (text === null ? null : cleanText(text))

/**
 * JSON text for a jsonb parameter, every string and key made acceptable first (see cleanText). Cleaning the
 * encoded text instead would also cut the six characters `\u0000` that an escaped backslash leaves in text
 * that merely mentions it, and break the JSON.
 */
export const jsonParam = (value: unknown): string | null =>
  value === undefined || value === null ? null : JSON.stringify(cleanJson(value))

const cleanJson = (value: unknown): unknown => {
  if (typeof value === "string") return cleanText(value)
  if (typeof value !== "object" || value === null) return value
  if (Array.isArray(value)) return value.map(cleanJson)
  // Objects that encode themselves (a Date) are left to do so.
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return value
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [cleanText(k), cleanJson(v)]))
}

export const finalStatusOf = (status: ResultRow["status"]) =>
  status === "success" || status === "partial" ? "completed" : status === "cancelled" ? "cancelled" : "failed"

export class Queue extends Context.Tag("stageline/Queue")<Queue, QueueService>() {
  static readonly make = Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const claim: QueueService["claim"] = (workerId, leaseMs) =>
      sql`SELECT * FROM claim_next_request(${workerId}, ${leaseMs} * interval '1 millisecond')`.pipe(
        Effect.flatMap((rows) =>
          rows.length === 0
            ? Effect.succeed(Option.none())
            : decodeRequest(rows[0]).pipe(Effect.map(Option.some), Effect.orDie)
        ),
        Effect.withSpan("Queue.claim")
      )

    const heartbeat: QueueService["heartbeat"] = (requestId, workerId, leaseMs, stage) =>
      sql<{ status: string }>`UPDATE orchestration_requests
           SET lease_expires_at = CASE WHEN status = 'processing' THEN now() + ${leaseMs} * interval '1 millisecond'
                                       ELSE lease_expires_at END,
               heartbeat_at = now(),
               current_stage = ${stage}
         WHERE id = ${requestId} AND claimed_by = ${workerId} AND status IN ('processing', 'cancelled')
     RETURNING status`.pipe(
        Effect.map(
          (rows): LeaseState => (rows.length === 0 ? "lost" : rows[0]!.status === "cancelled" ? "cancelled" : "held")
        ),
        Effect.withSpan("Queue.heartbeat")
      )

    const rescue: QueueService["rescue"] = (maxAttempts, backoffMs, retryCrashes) =>
      sql<Rescued>`SELECT * FROM rescue_expired_leases(${maxAttempts}, ${backoffMs} * interval '1 millisecond', ${retryCrashes})`.pipe(
        Effect.withSpan("Queue.rescue")
      )

    const release: QueueService["release"] = (requestId, workerId) =>
      sql`UPDATE orchestration_requests
             SET status = 'pending', claimed_at = NULL, claimed_by = NULL, attempts = greatest(attempts - 1, 0),
                 lease_expires_at = NULL, current_stage = NULL
           WHERE id = ${requestId} AND status = 'processing' AND claimed_by = ${workerId}
       RETURNING id`.pipe(
        Effect.tap((rows) => (rows.length > 0 ? sql`SELECT pg_notify('stageline_requests', 'released')` : Effect.void)),
        Effect.map((rows) => rows.length > 0),
        Effect.withSpan("Queue.release")
      )

    const record: QueueService["record"] = (r, retry) => {
      const final = finalStatusOf(r.status)
      const mayRetry = retry.retryable && final === "failed"
      // One statement, so one round trip and one commit: it decides the next status and writes it (a
      // cancelled request stays cancelled; a retried one goes back to pending, unclaimed, after its backoff;
      // any other is finished now), and writes the result row only if the request was still this worker's.
      // When it was not, whether this attempt's row is already there tells a repeated record from a lost claim.
      return sql<{ status: string | null; existing: boolean }>`WITH next AS (
          SELECT q.id,
                 CASE WHEN q.status = 'cancelled' THEN 'cancelled'
                      WHEN ${mayRetry} AND q.attempts < coalesce(q.max_attempts, ${retry.maxAttempts}) THEN 'pending'
                      ELSE ${final} END AS status
            FROM orchestration_requests AS q
           WHERE q.id = ${r.requestId} AND q.claimed_by = ${r.workerId} AND q.status IN ('processing', 'cancelled')
             FOR UPDATE
        ), updated AS (
          UPDATE orchestration_requests AS q
             SET status = n.status,
                 run_after = CASE WHEN n.status = 'pending'
                                  THEN now() + ${retry.backoffMs} * interval '1 millisecond' * power(2, greatest(q.attempts - 1, 0))
                                  ELSE q.run_after END,
                 claimed_by = CASE WHEN n.status = 'pending' THEN NULL ELSE q.claimed_by END,
                 claimed_at = CASE WHEN n.status = 'pending' THEN NULL ELSE q.claimed_at END,
                 finished_at = CASE WHEN n.status = 'pending' THEN NULL ELSE now() END,
                 last_error = ${cleanNullable(r.error)},
                 lease_expires_at = NULL,
                 current_stage = NULL
            FROM next AS n
           WHERE q.id = n.id
       RETURNING q.status
        ), inserted AS (
          INSERT INTO orchestration_results
                 (request_id, attempt, worker_id, status, output, pr_url, commit_sha, branch_name, duration_ms,
                  error, session_id, model, num_turns, cost_usd, usage)
          SELECT ${r.requestId}::uuid, ${r.attempt}::integer, ${r.workerId}::text, ${r.status}::text,
                 ${jsonParam(r.output)}::jsonb, ${cleanNullable(r.prUrl)}::text, ${cleanNullable(r.commitSha)}::text, ${cleanNullable(r.branchName)}::text,
                 ${Math.round(r.durationMs)}::integer, ${cleanNullable(r.error)}::text, ${cleanNullable(r.sessionId)}::text,
                 ${cleanNullable(r.model)}::text,
                 ${r.numTurns}::integer, ${r.costUsd}::numeric, ${jsonParam(r.usage)}::jsonb
            FROM updated
          ON CONFLICT (request_id, attempt) DO NOTHING
        )
        SELECT (SELECT status FROM updated) AS status,
               EXISTS (SELECT 1 FROM orchestration_results
                        WHERE request_id = ${r.requestId} AND attempt = ${r.attempt} AND worker_id = ${r.workerId}) AS existing`.pipe(
        Effect.map(([row]): RecordOutcome => {
          if (!row || row.status === null) return row?.existing ? "already-recorded" : "not-owner"
          return row.status === "pending" ? "retrying" : "recorded"
        }),
        // Counted once the statement has committed, so a failed one is not.
        Effect.tap((outcome) =>
          outcome === "recorded" || outcome === "retrying"
            ? Metrics.attemptRecorded(r, outcome === "recorded")
            : Effect.void
        ),
        Effect.withSpan("Queue.record")
      )
    }

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

    return { claim, heartbeat, rescue, release, record, enqueue, status } satisfies QueueService
  })

  static readonly layer = Layer.effect(Queue, Queue.make)
}
