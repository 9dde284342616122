/**
 * A row of `orchestration_requests` as a worker holds it once claimed, and the states a request moves
 * through.
 *
 * States and who owns them:
 * - `pending`: inserted by anyone (plain SQL, `stageline enqueue`); any worker may claim it once `run_after`
 *   has passed.
 * - `processing`: owned by the worker named in `claimed_by`; only that worker records its outcome.
 * - `completed` / `failed`: final, written by `record` together with the result row.
 * - `cancelled`: set by an operator; a pending request in this state is never claimed.
 *
 * Delivery is at least once: a request whose worker died is claimed again (an operator's
 * `release_stale_requests`), so a stage must tolerate meeting a request a second time.
 */
import { Schema } from "effect"

export const RequestStatus = Schema.Literal("pending", "processing", "completed", "failed", "cancelled")
export type RequestStatus = typeof RequestStatus.Type

/**
 * A plain struct, not a Schema.Class: every claim decodes its rows, and building a class instance cost
 * three times what checking the fields did.
 */
export const ClaimedRequest = Schema.Struct({
  id: Schema.String,
  created_at: Schema.DateFromSelf,
  status: RequestStatus,
  repo_url: Schema.NullOr(Schema.String),
  branch: Schema.NullOr(Schema.String),
  prompt: Schema.String,
  /** As stored: decoded by the stages that use it (see RequestConfig), so a bad one fails its request. */
  config: Schema.Unknown,
  metadata: Schema.Unknown,
  /** When it may run: not before this. Absent where a claim stage's row lacks it. */
  run_after: Schema.optional(Schema.DateFromSelf),
  claimed_at: Schema.NullOr(Schema.DateFromSelf),
  claimed_by: Schema.NullOr(Schema.String),
  attempts: Schema.Number,
  /** Null: the pipeline's `queue.max_attempts`. */
  max_attempts: Schema.NullOr(Schema.Number),
  priority: Schema.Number
})
export type ClaimedRequest = typeof ClaimedRequest.Type

const decodeBySchema = Schema.decodeUnknownSync(ClaimedRequest)
const statuses: ReadonlySet<unknown> = new Set(RequestStatus.literals)
const isText = (value: unknown) => typeof value === "string"
const isTextOrNull = (value: unknown) => value === null || typeof value === "string"
const isNumber = (value: unknown) => typeof value === "number"
const isNumberOrNull = (value: unknown) => value === null || typeof value === "number"
const isDate = (value: unknown) => value instanceof Date
const isDateOrNull = (value: unknown) => value === null || value instanceof Date

/** Whether `row` is a ClaimedRequest, as `Schema.is(ClaimedRequest)` says, in plain checks. */
export const fitsClaimedRequest = (row: unknown): row is ClaimedRequest => {
  if (typeof row !== "object" || row === null) return false
  const r = row as Record<string, unknown>
  return (
    isText(r.id) &&
    isDate(r.created_at) &&
    statuses.has(r.status) &&
    isTextOrNull(r.repo_url) &&
    isTextOrNull(r.branch) &&
    isText(r.prompt) &&
    (r.run_after === undefined || isDate(r.run_after)) &&
    isDateOrNull(r.claimed_at) &&
    isTextOrNull(r.claimed_by) &&
    isNumber(r.attempts) &&
    isNumberOrNull(r.max_attempts) &&
    isNumber(r.priority)
  )
}

/**
 * A claimed row as a ClaimedRequest: the schema's fields only, as its decoder returns them (a statement's
 * other columns stay behind). A row that fits is copied without the decoder; one that does not goes
 * through it, which throws saying what was wrong. Every claim decodes its rows, and in an idle worker's
 * pickup the decoder, run cold, took 45 µs where the plain checks take 4.
 */
export const decodeClaimedRow = (row: unknown): ClaimedRequest => {
  if (!fitsClaimedRequest(row)) return decodeBySchema(row)
  const request: { -readonly [K in keyof ClaimedRequest]: ClaimedRequest[K] } = {
    id: row.id,
    created_at: row.created_at,
    status: row.status,
    repo_url: row.repo_url,
    branch: row.branch,
    prompt: row.prompt,
    config: row.config,
    metadata: row.metadata,
    claimed_at: row.claimed_at,
    claimed_by: row.claimed_by,
    attempts: row.attempts,
    max_attempts: row.max_attempts,
    priority: row.priority
  }
  if (row.run_after !== undefined) request.run_after = row.run_after
  return request
}
