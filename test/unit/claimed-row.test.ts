/**
 * A claimed row's plain checks (decodeClaimedRow) say what the ClaimedRequest schema says: every row the
 * schema's arbitrary makes fits, and a row with any one field swapped for a value of another kind fits
 * exactly when the schema takes it. A field added to the schema and not to the checks fails the second.
 */
import { Arbitrary, FastCheck, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { ClaimedRequest, decodeClaimedRow, fitsClaimedRequest } from "../../src/queue/Request.js"

const isRequest = Schema.is(ClaimedRequest)
const decodeBySchema = Schema.decodeUnknownSync(ClaimedRequest)
const rows = Arbitrary.make(ClaimedRequest)
/** Values of every kind a column can bring, and some it cannot. */
const others = FastCheck.constantFrom<unknown>(
  undefined,
  null,
  "",
  "pending",
  "queued",
  0,
  Number.NaN,
  true,
  new Date(0),
  "2026-12-04T00:00:00Z",
  {},
  []
)
const fields = FastCheck.constantFrom(...Object.keys(ClaimedRequest.fields))
const claimed: ClaimedRequest = {
  id: "0b0e3f6c-8f0a-4a57-9d36-1f1d5c1e2a10",
  created_at: new Date(),
  status: "processing",
  repo_url: null,
  branch: null,
  prompt: "review",
  config: { model: "x" },
  metadata: null,
  run_after: new Date(),
  claimed_at: new Date(),
  claimed_by: "w/1",
  attempts: 1,
  max_attempts: null,
  priority: 0
}

describe("a claimed row", () => {
  it("fits whenever the schema takes it, and is then what the schema's decoder returns", () => {
    FastCheck.assert(
      FastCheck.property(rows, (row) => {
        expect(fitsClaimedRequest(row)).toBe(true)
        expect(decodeClaimedRow(row)).toEqual(decodeBySchema(row))
      })
    )
  })

  it("with one field of another kind, fits exactly when the schema takes it", () => {
    FastCheck.assert(
      FastCheck.property(rows, fields, others, (row, field, value) => {
        const changed = { ...row, [field]: value }
        expect(fitsClaimedRequest(changed)).toBe(isRequest(changed))
      }),
      { numRuns: 2_000 }
    )
  })

  it("keeps the schema's fields only", () => {
    const decoded = decodeClaimedRow({ ...claimed, outcomes: [], n: 1 })
    expect(Object.keys(decoded).sort()).toEqual(Object.keys(ClaimedRequest.fields).sort())
    expect(decoded).toEqual(claimed)
  })

  it("that does not fit fails with the schema's account of what was wrong", () => {
    expect(() => decodeClaimedRow({ ...claimed, status: "queued" })).toThrow(/status/)
    expect(() => decodeClaimedRow(null)).toThrow(/Expected/)
  })
})
