/**
 * The queue: claiming, releasing and recording requests. Every state change a worker makes is guarded by
 * `status = 'processing' AND claimed_by = <worker>`, so a worker that lost its claim (an operator released
 * it, another worker took it over) can never overwrite what the new owner does.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlError from "@effect/sql/SqlError"
import { Context, Effect, Either, Exit, FiberSet, Layer, Option, Runtime } from "effect"
import * as Batcher from "../db/Batcher.js"
import * as Prepared from "../db/Prepared.js"
import * as Metrics from "../metrics/Metrics.js"
import * as Tracing from "../tracing/Tracing.js"
import * as ClaimedAhead from "./ClaimedAhead.js"
import { ClaimedRequest, decodeClaimedRow } from "./Request.js"

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

/**
 * Asks record to claim the next request for the same worker in its own statement, with a lease of
 * `leaseMs`: the worker's next claim then takes it without a statement (see claim).
 */
export interface ClaimNext {
  readonly leaseMs: number
}

/** Whether a failed attempt may be tried again, and when. */
export interface RetryPolicy {
  readonly retryable: boolean
  /** Used when the request's own max_attempts is null. */
  readonly maxAttempts: number
  /** Before the second attempt; doubled for each one after. */
  readonly backoffMs: number
}

/**
 * What a heartbeat found: the request is still ours (its lease renewed), was cancelled, is no longer ours,
 * or is ours but locked by another transaction, so its lease was not renewed this time.
 */
export type LeaseState = "held" | "cancelled" | "lost" | "busy"

/** A request a worker fiber holds, as its heartbeat names it. */
export interface HeldLease {
  readonly requestId: string
  readonly workerId: string
  readonly stage: string | null
}

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

/** A request claimed for a worker, and when the statement that claimed it was sent: its lease runs from then. */
export interface Claim {
  readonly request: ClaimedRequest
  readonly sentAt: number
}

/** What Queue.claimIdle found for a worker fiber: a request held for it, none, or a statement that failed. */
export type IdleClaimOutcome = "claimed" | "none" | "failed"

export interface QueueService {
  /**
   * Claims the next pending request for `workerId` with a lease of `leaseMs`, if there is one: the one its
   * records claimed ahead for it first (see `record`), else one from the queue. While a record that claims
   * ahead for the worker is still on its way, the claim waits for it rather than claim on its own.
   */
  readonly claim: (workerId: string, leaseMs: number) => Effect.Effect<Option.Option<Claim>, SqlError.SqlError>
  /**
   * For an idle worker fiber woken by a notification: claims a request for `workerId` before the fiber
   * wakes, held for its next `claim` as a record's claims ahead are, and tells `answer` whether one was
   * claimed (`none`: the fiber may wait on), or whether the statement failed. Idle fibers woken on the
   * same turn claim in one statement, sent from the notification's own callback: a fiber woken first to
   * send it made the pickup of an idle worker 0.1 ms longer (see the README). Returns how to stop
   * waiting for the answer; a request claimed meanwhile stays held, and is put back if not taken in time.
   */
  readonly claimIdle: (workerId: string, leaseMs: number, answer: (outcome: IdleClaimOutcome) => void) => () => void
  /**
   * Renews the leases of the requests given (and notes the stage each is in), all in one statement: what
   * each request's heartbeat found, by id.
   */
  readonly heartbeat: (
    leases: ReadonlyArray<HeldLease>,
    leaseMs: number
  ) => Effect.Effect<ReadonlyMap<string, LeaseState>, SqlError.SqlError>
  /** Puts back (or fails) requests whose lease ran out, with a result row for each lost attempt. */
  readonly rescue: (
    maxAttempts: number,
    backoffMs: number,
    retryCrashes: boolean
  ) => Effect.Effect<ReadonlyArray<Rescued>, SqlError.SqlError>
  /**
   * Puts a request this worker holds back to pending, not counting the attempt (a shutdown, not a failure,
   * or a request claimed ahead that its worker did not take). One cancelled meanwhile ends cancelled
   * instead, its attempt not counted either: it never ran to a result. What became of it, or null if this
   * worker did not hold it.
   */
  readonly release: (
    requestId: string,
    workerId: string
  ) => Effect.Effect<"pending" | "cancelled" | null, SqlError.SqlError>
  /**
   * Writes the attempt's result row and the request's next status in one transaction: final, or back to
   * pending after a backoff when the attempt failed, may be retried, and has attempts left. With `next`, the
   * same statement claims ahead for the worker: its next request, or as many as depthAhead says for a
   * worker whose runs are quicker than the statement.
   */
  readonly record: (
    result: ResultRow,
    retry: RetryPolicy,
    next?: ClaimNext
  ) => Effect.Effect<RecordOutcome, SqlError.SqlError>
  /**
   * `record`, with its answer handed to `done` instead of to a fiber waiting for it: for a result written
   * behind the run (Recorder.writeBehind), where a fiber kept only to wait for the statement cost more
   * than the rest of the write. Not traced; a caller whose trace should show the write uses `record`.
   */
  readonly recordThen: (
    result: ResultRow,
    retry: RetryPolicy,
    next: ClaimNext | undefined,
    done: (exit: Exit.Exit<RecordOutcome, SqlError.SqlError>) => void
  ) => void
  /**
   * Puts back the request claimed ahead for `workerId` (see `record`), if there is one, once any record
   * claiming ahead for it has its answer: the worker stops claiming.
   */
  readonly releaseAhead: (workerId: string) => Effect.Effect<void>
  readonly enqueue: (request: NewRequest) => Effect.Effect<string, SqlError.SqlError>
  readonly status: Effect.Effect<StatusCounts, SqlError.SqlError>
}

/** A row record_attempts returns per attempt: the status it wrote, or null and whether a result was there. */
interface RecordedRow {
  readonly status: string | null
  readonly existing: boolean
}

/** An idle worker fiber asking Queue.claimIdle for a request. */
interface IdleCall {
  readonly workerId: string
  readonly leaseMs: number
  waiting: boolean
  readonly answered: (outcome: IdleClaimOutcome) => void
}

/** A row of recordAndClaimStatement: a request claimed (its columns null if none), one with the record's rows. */
interface RecordedAndClaimed {
  readonly outcomes: ReadonlyArray<RecordedRow> | null
  readonly id: string | null
}

/**
 * The two statements every request costs, as prepared: claims for the worker ids in `$1` with a lease of
 * `$2` ms; records the attempts in the jsonb array `$1` (see record_attempts in sql/000006). The claim names
 * the columns it hands on, so that what a prepared claim returns stays what it was planned to return
 * whatever a later migration adds to the table or the function. The benchmark sends them too.
 */
export const claimStatement = {
  name: "stageline_claim_v1",
  text: `SELECT ${Object.keys(ClaimedRequest.fields).join(", ")}
           FROM claim_next_requests($1::text[], $2 * interval '1 millisecond')`
} as const
export const recordStatement = {
  name: "stageline_record_v1",
  text: "SELECT * FROM record_attempts($1::jsonb)"
} as const
/**
 * The record and a claim for the workers in `$2` with a lease of `$3` ms, in one statement: one round
 * trip and one commit where a request cost two. Each request claimed is a row; when none was, one row says
 * so with its columns null. One row (the first claimed, or that one) carries what record_attempts returned,
 * a json array in the attempts' order; the others carry null, so the driver parses it once. Which of the
 * two the planner runs first does not matter: the record writes requests this worker holds, the claim
 * takes only pending ones.
 */
export const recordAndClaimStatement = {
  name: "stageline_record_claim_v2",
  text: `SELECT CASE WHEN claimed.n IS NULL OR claimed.n = 1 THEN recorded.outcomes END AS outcomes, claimed.*
           FROM (SELECT json_agg(json_build_object('status', r.status, 'existing', r.existing) ORDER BY r.n) AS outcomes
                   FROM record_attempts($1::jsonb) WITH ORDINALITY AS r (status, existing, n)) AS recorded
           LEFT JOIN (SELECT row_number() OVER () AS n, ${Object.keys(ClaimedRequest.fields).join(", ")}
                        FROM claim_next_requests($2::text[], $3 * interval '1 millisecond')) AS claimed ON true`
} as const

/**
 * Text PostgreSQL accepts, from text an agent printed: text and jsonb columns cannot hold U+0000, and jsonb
 * refuses a lone UTF-16 surrogate (what a decoder makes of bytes that were not UTF-8 stays well-formed, but
 * JSON the agent printed may escape one), so NUL is dropped and a lone surrogate becomes U+FFFD.
 */
export const cleanText = (text: string): string =>
  text.replaceAll("\0", "").replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")

/**
 * JSON text for a jsonb parameter, every string and key made acceptable first (see cleanText). Cleaning the
 * encoded text instead would also cut the six characters `\u0000` that an escaped backslash leaves in text
 * that merely mentions it, and break the JSON.
 */
export const jsonParam = (value: unknown): string | null => {
  if (value === undefined || value === null) return null
  const text = JSON.stringify(value)
  // The common case has nothing to clean, and walking the value would copy all of it. JSON.stringify
  // writes NUL as \u0000 and a lone surrogate as \udXXX, so text without either needs nothing (text that
  // merely mentions them, "\\u0000", takes the long way, which gets it right too).
  return /\\u0000|\\ud[89a-f]/i.test(text) ? JSON.stringify(cleanJson(value)) : text
}

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

/** A span's stack trace is a stack walk on every call, and on a queue call it names only this file. */
const noStackTrace = { captureStackTrace: false } as const

const groupBy = <A, K>(items: ReadonlyArray<A>, key: (a: A) => K): Array<[K, Array<A>]> => {
  const groups = new Map<K, Array<A>>()
  for (const item of items) {
    const k = key(item)
    const group = groups.get(k)
    if (group) group.push(item)
    else groups.set(k, [item])
  }
  return [...groups]
}

/** A record as the batcher holds it: the attempt, its retry policy, and whether to claim the next. */
interface RecordCall {
  readonly result: ResultRow
  readonly retry: RetryPolicy
  readonly next: ClaimNext | undefined
  /** How many requests to claim ahead for its worker in the same statement (with `next`). */
  readonly claims: number
}

/** An attempt as record_attempts reads it (sql/000006). */
const attemptOf = ({ result: r, retry }: RecordCall) => {
  const final = finalStatusOf(r.status)
  return {
    request_id: r.requestId,
    attempt: r.attempt,
    worker_id: r.workerId,
    status: r.status,
    final,
    may_retry: retry.retryable && final === "failed",
    max_attempts: retry.maxAttempts,
    backoff_ms: retry.backoffMs,
    output: r.output ?? null,
    pr_url: r.prUrl,
    commit_sha: r.commitSha,
    branch_name: r.branchName,
    duration_ms: Math.round(r.durationMs),
    error: r.error,
    session_id: r.sessionId,
    model: r.model,
    num_turns: r.numTurns,
    cost_usd: r.costUsd,
    usage: r.usage ?? null
  }
}

const outcomeOf = (row: RecordedRow): RecordOutcome => {
  if (row.status === null) return row.existing ? "already-recorded" : "not-owner"
  return row.status === "pending" ? "retrying" : "recorded"
}

/**
 * How long a request claimed ahead may wait for its worker's claim, as a share of the lease. Its lease
 * runs unrenewed meanwhile, and it waits on a worker that is not free yet (a slow clean-up after the run,
 * or a long run after quick ones that claimed several ahead): one not taken by then is put back to
 * pending, for whichever worker is free first (see ClaimedAhead).
 */
const freshShare = 1 / 10

/** The most requests a worker fiber holds claimed ahead (see depthAhead). */
const maxDepth = 16

/**
 * How many requests a worker fiber should hold claimed ahead after a run that took `runMs` (from its
 * claim to its record), when a record statement takes `statementMs` to come back: as many as it runs in
 * that time, so that it does not idle waiting for the statement that records its last run and brings its
 * next, up to `maxDepth`. Its record is written behind the run (Recorder), so the fiber goes straight on
 * to what it holds, and its records go out together when it stops. A run as long as a statement or
 * longer (an agent's, minutes) holds one: the request its record claims for the next run, as before. So a
 * request claimed ahead waits for its worker about as long as a statement takes, and at 1 and 4 fibers
 * the worker's CPU and the database's no longer take turns for every request.
 */
export const depthAhead = (runMs: number, statementMs: number) =>
  runMs >= statementMs ? 1 : Math.min(maxDepth, Math.ceil(statementMs / Math.max(runMs, 0.01)))

/**
 * How many groups a worker of `workers` fibers records in, each with its own statement in flight. The
 * fibers that one statement answered run their requests and record them together, so with one group the
 * worker's CPU and the database's take turns: the fibers run while no statement is out, and the statement
 * runs while no fiber can. With two, one half's statement is out while the other half runs. A statement
 * costs much the same for one request as for several (its commit waits for the disk), so with few fibers
 * the second statement costs more than the overlap wins: at 16 and 64 fibers two groups made 12–19% more
 * requests a second in the throughput benchmark, at 4 they made fewer and at 8 no more.
 */
export const recordGroupsFor = (workers: number) => (workers >= 16 ? 2 : 1)

/** How many worker fibers use the queue (WORKER_COUNT): one, unless a worker's layer says otherwise. */
export class QueueUsers extends Context.Reference<QueueUsers>()("stageline/QueueUsers", {
  defaultValue: () => ({ workers: 1 })
}) {}

export class Queue extends Context.Tag("stageline/Queue")<Queue, QueueService>() {
  static readonly make = Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { workers } = yield* QueueUsers
    const pool = yield* Prepared.PgPool
    // The statements every request runs, prepared (see Prepared); the rest are rare.
    const claimNext = Prepared.prepare<unknown>(pool, claimStatement.name, claimStatement.text)
    const recordAttempts = Prepared.prepare<RecordedRow>(pool, recordStatement.name, recordStatement.text)
    // Rows locked in id order, as record_attempts locks them, so that the two never wait on each other in
    // a circle; and a row another transaction holds locked (an operator's, a cancel's) is skipped, not
    // waited for: read as it stands, it is reported busy, so one locked row holds up no other lease.
    // Planned at every call: it reads the queue's table, and a plan kept from when the table was small
    // (a new database) went on reading all of it, 135 ms a heartbeat at a million requests.
    const renewLeases = Prepared.planned<{ id: string; status: string; renewed: boolean }>(
      pool,
      "the heartbeat",
      `WITH held AS (
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) AS h (id, worker_id, stage)
       ), locked AS (
         SELECT q.id, h.stage
           FROM orchestration_requests AS q
           JOIN held AS h ON h.id = q.id AND h.worker_id = q.claimed_by
          WHERE q.id = ANY ($1::uuid[]) AND q.status IN ('processing', 'cancelled')
          ORDER BY q.id
            FOR NO KEY UPDATE OF q SKIP LOCKED
       ), renewed AS (
         UPDATE orchestration_requests AS q
            SET lease_expires_at = CASE WHEN q.status = 'processing' THEN now() + $4 * interval '1 millisecond'
                                        ELSE q.lease_expires_at END,
                heartbeat_at = now(),
                current_stage = l.stage
           FROM locked AS l
          WHERE q.id = l.id
      RETURNING q.id, q.status
       )
       SELECT id, status, true AS renewed FROM renewed
        UNION ALL
       SELECT q.id, q.status, false
         FROM orchestration_requests AS q
         JOIN held AS h ON h.id = q.id AND h.worker_id = q.claimed_by
        WHERE q.id = ANY ($1::uuid[]) AND q.status IN ('processing', 'cancelled')
          AND q.id NOT IN (SELECT id FROM renewed)`
    )

    // Fibers that look for work at the same moment claim together (see Batcher): one statement names
    // them all and hands the i-th request taken to the i-th of them.
    const claimTogether = yield* Batcher.make({
      maxBatch: 100,
      run: (calls: ReadonlyArray<{ readonly workerId: string; readonly leaseMs: number }>) =>
        Effect.forEach(
          groupBy(calls, (c) => c.leaseMs),
          ([leaseMs, group]) =>
            claimNext([group.map((c) => c.workerId), leaseMs]).pipe(
              // A row that does not decode is a defect: the statement names the columns it returns.
              Effect.map(
                (rows) =>
                  new Map(
                    rows.map((row) => {
                      const request = decodeClaimedRow(row)
                      return [request.claimed_by, request]
                    })
                  )
              )
            )
        ).pipe(
          Effect.map((byLease) => {
            const claimed = new Map(byLease.flatMap((m) => [...m]))
            return calls.map((c) => Option.fromNullable(claimed.get(c.workerId)))
          })
        )
    })

    const claimFromQueue = (workerId: string, leaseMs: number) =>
      Effect.suspend(() => {
        const sentAt = Date.now()
        return claimTogether({ workerId, leaseMs }).pipe(
          Effect.map(Option.map((request): Claim => ({ request, sentAt }))),
          Tracing.withSpan("Queue.claim", noStackTrace)
        )
      })

    const heartbeat: QueueService["heartbeat"] = (leases, leaseMs) =>
      renewLeases([
        leases.map((l) => l.requestId),
        leases.map((l) => l.workerId),
        leases.map((l) => l.stage),
        leaseMs
      ]).pipe(
        Effect.map((rows) => {
          const found = new Map(
            rows.map((row): [string, LeaseState] => [
              row.id,
              !row.renewed ? "busy" : row.status === "cancelled" ? "cancelled" : "held"
            ])
          )
          return new Map(leases.map((l): [string, LeaseState] => [l.requestId, found.get(l.requestId) ?? "lost"]))
        }),
        Tracing.withSpan("Queue.heartbeat", noStackTrace)
      )

    const rescue: QueueService["rescue"] = (maxAttempts, backoffMs, retryCrashes) =>
      sql<Rescued>`SELECT * FROM rescue_expired_leases(${maxAttempts}, ${backoffMs} * interval '1 millisecond', ${retryCrashes})`.pipe(
        Tracing.withSpan("Queue.rescue", noStackTrace)
      )

    // A cancelled request whose result was written (finished_at set) is not this worker's to change.
    const release: QueueService["release"] = (requestId, workerId) =>
      sql<{ status: "pending" | "cancelled" }>`UPDATE orchestration_requests
             SET status = CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'pending' END,
                 finished_at = CASE WHEN status = 'cancelled' THEN now() END,
                 claimed_at = NULL, claimed_by = NULL, attempts = greatest(attempts - 1, 0),
                 lease_expires_at = NULL, current_stage = NULL
           WHERE id = ${requestId} AND status IN ('processing', 'cancelled') AND finished_at IS NULL
             AND claimed_by = ${workerId}
       RETURNING status`.pipe(
        Effect.tap((rows) =>
          rows[0]?.status === "pending" ? sql`SELECT pg_notify('stageline_requests', 'released')` : Effect.void
        ),
        Effect.map((rows) => rows[0]?.status ?? null),
        Tracing.withSpan("Queue.release", noStackTrace)
      )

    const recordAndClaim = Prepared.prepare<RecordedAndClaimed>(
      pool,
      recordAndClaimStatement.name,
      recordAndClaimStatement.text
    )

    // Requests claimed by records for the workers that made them (see ClaimedAhead). What is left when the
    // worker stops is put back, after the last records have landed: this finalizer is added before the
    // batchers', so it runs after theirs.
    const runtime = yield* Effect.runtime<never>()
    const putBack = (workerId: string, taken: Claim) =>
      release(taken.request.id, workerId).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning(`could not put request ${taken.request.id}, claimed ahead, back to pending`, error)
        ),
        Effect.asVoid
      )
    // Those left too long are put back from their timers, each in a fiber the close waits for.
    const puttingBack = yield* FiberSet.make<void>()
    const ahead = ClaimedAhead.make((workerId, taken) => {
      FiberSet.unsafeAdd(puttingBack, Runtime.runFork(runtime)(putBack(workerId, taken)))
    })
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(
        FiberSet.awaitEmpty(puttingBack),
        Effect.forEach(ahead.takeAll(), ([workerId, taken]) => putBack(workerId, taken), { discard: true })
      )
    )
    // When each worker fiber was last handed a request, and how long a record statement that claims
    // takes to come back (a moving average): what depthAhead weighs.
    const handedAt = new Map<string, number>()
    let statementMs = 1

    // Attempts that end at the same moment are recorded together (see Batcher), each exactly as alone;
    // those that ask for the next request claim it in the same statement, together. The fibers record in
    // recordGroupsFor groups, taken in turn as each first records and kept from then on.
    const recordInGroup = Batcher.make({
      maxBatch: 100,
      run: (calls: ReadonlyArray<RecordCall>) => {
        const attempts = jsonParam(calls.map(attemptOf))
        const leaseMs = calls.find((c) => c.claims > 0)?.next?.leaseMs
        const claimers: Array<string> = []
        for (const c of calls) {
          if (c.next?.leaseMs !== leaseMs) continue
          for (let i = 0; i < c.claims; i++) claimers.push(c.result.workerId)
        }
        if (leaseMs === undefined || claimers.length === 0) {
          return Effect.map(recordAttempts([attempts]), (rows) => rows.map(outcomeOf))
        }
        const sentAt = Date.now()
        const sent = performance.now()
        return recordAndClaim([attempts, claimers, leaseMs]).pipe(
          // Decoded in a plain loop, as the claim's rows are: an Effect per row cost more than decoding it.
          Effect.map((rows) => {
            statementMs += (performance.now() - sent - statementMs) / 5
            for (const row of rows) {
              if (row.id === null) continue
              const request = decodeClaimedRow(row)
              ahead.add(request.claimed_by ?? "", { request, sentAt }, leaseMs * freshShare)
            }
            return (rows.find((row) => row.outcomes !== null)?.outcomes ?? []).map(outcomeOf)
          })
        )
      }
    })

    const groups = yield* Effect.all(Array.from({ length: recordGroupsFor(workers) }, () => recordInGroup))
    const groupOf = new Map<string, Batcher.Batched<RecordCall, RecordOutcome, SqlError.SqlError>>()
    const groupFor = (workerId: string) => {
      let group = groupOf.get(workerId)
      if (group === undefined) {
        group = groups[groupOf.size % groups.length]!
        groupOf.set(workerId, group)
      }
      return group
    }
    // Counted once the statement has committed, so a failed one is not.
    const counted = (result: ResultRow, outcome: RecordOutcome) => {
      if (outcome === "recorded" || outcome === "retrying") Metrics.countRecorded(result, outcome === "recorded")
    }
    /** How many requests a record of `workerId` claims ahead: none without `next`. */
    const claimsFor = (workerId: string, next: ClaimNext | undefined) =>
      next === undefined
        ? 0
        : ahead.ask(workerId, depthAhead(performance.now() - (handedAt.get(workerId) ?? 0), statementMs))

    const recordNow = (call: RecordCall) =>
      groupFor(call.result.workerId)(call).pipe(
        Effect.tap((outcome) => Effect.sync(() => counted(call.result, outcome))),
        Tracing.withSpan("Queue.record", noStackTrace)
      )

    const recordThen: QueueService["recordThen"] = (result, retry, next, done) => {
      const { workerId } = result
      const claims = claimsFor(workerId, next)
      groupFor(workerId).send({ result, retry, next, claims }, (exit) => {
        // What the statement claimed is held in `ahead` by now: the batch's run put it there.
        if (claims > 0) ahead.answered(workerId, claims)
        if (Exit.isSuccess(exit)) counted(result, exit.value)
        done(exit)
      })
    }

    const record: QueueService["record"] = (result, retry, next) => {
      if (next === undefined) return recordNow({ result, retry, next, claims: 0 })
      return Effect.suspend(() => {
        const { workerId } = result
        const claims = claimsFor(workerId, next)
        const recorded = recordNow({ result, retry, next, claims })
        // Answered once what the statement claimed is held in `ahead`: the batch's run put it there.
        return claims === 0
          ? recorded
          : Effect.ensuring(
              recorded,
              Effect.sync(() => ahead.answered(workerId, claims))
            )
      })
    }

    // Idle fibers that ask on one turn (a notification calls each in turn) go out in one statement, sent
    // once the turn's calls are in. A statement that fails is not reported here: each fiber is told, claims
    // for itself, and reports its own claim's failure.
    const claimNow = Prepared.prepareCallback<unknown>(pool, claimStatement.name, claimStatement.text)
    let idle: Array<IdleCall> = []
    const claimForIdle = () => {
      const calls = idle.filter((call) => call.waiting)
      idle = []
      const byLease = new Map<number, Array<IdleCall>>()
      for (const call of calls) {
        // Something is held for it already, or on its way: it wakes to that.
        if (ahead.ask(call.workerId, 1) === 0) {
          call.answered("claimed")
          continue
        }
        const group = byLease.get(call.leaseMs)
        if (group === undefined) byLease.set(call.leaseMs, [call])
        else group.push(call)
      }
      for (const [leaseMs, group] of byLease) {
        const sentAt = Date.now()
        claimNow([group.map((call) => call.workerId), leaseMs], (answer) => {
          const claimed = new Set<string>()
          let failed = Either.isLeft(answer)
          if (Either.isRight(answer)) {
            try {
              for (const row of answer.right) {
                const request = decodeClaimedRow(row)
                const workerId = request.claimed_by ?? ""
                ahead.add(workerId, { request, sentAt }, leaseMs * freshShare)
                claimed.add(workerId)
              }
            } catch {
              // A row that does not decode: the fibers claim for themselves, and fail as such a claim does.
              failed = true
            }
          }
          for (const call of group) ahead.answered(call.workerId, 1)
          for (const call of group) call.answered(failed ? "failed" : claimed.has(call.workerId) ? "claimed" : "none")
        })
      }
    }
    const claimIdle: QueueService["claimIdle"] = (workerId, leaseMs, answer) => {
      const call: IdleCall = {
        workerId,
        leaseMs,
        waiting: true,
        answered: (outcome) => {
          if (!call.waiting) return
          call.waiting = false
          answer(outcome)
        }
      }
      if (idle.length === 0) queueMicrotask(claimForIdle)
      idle.push(call)
      return () => {
        call.waiting = false
      }
    }

    const handOut = (workerId: string, claim: Claim) => {
      handedAt.set(workerId, performance.now())
      return claim
    }

    const claim: QueueService["claim"] = (workerId, leaseMs): Effect.Effect<Option.Option<Claim>, SqlError.SqlError> =>
      Effect.suspend(() => {
        const taken = ahead.take(workerId)
        if (taken !== undefined) return Effect.succeed(Option.some(handOut(workerId, taken)))
        // Its next request is on its way in a record's statement: wait for that, not claim on its own.
        if (ahead.onItsWay(workerId)) return Effect.zipRight(ahead.nextAnswer(workerId), claim(workerId, leaseMs))
        return Effect.map(
          claimFromQueue(workerId, leaseMs),
          Option.map((c) => handOut(workerId, c))
        )
      })

    const releaseAhead: QueueService["releaseAhead"] = (workerId): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (ahead.onItsWay(workerId)) return Effect.zipRight(ahead.nextAnswer(workerId), releaseAhead(workerId))
        return Effect.forEach(ahead.takeAll(workerId), ([w, taken]) => putBack(w, taken), { discard: true })
      })

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

    return {
      claim,
      claimIdle,
      heartbeat,
      rescue,
      release,
      record,
      recordThen,
      releaseAhead,
      enqueue,
      status
    } satisfies QueueService
  })

  static readonly layer = Layer.scoped(Queue, Queue.make)

  /** The queue of a worker running `workers` fibers at once. */
  static readonly layerFor = (workers: number) => Layer.provide(Queue.layer, Layer.succeed(QueueUsers, { workers }))
}
