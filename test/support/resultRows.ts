/** Result rows as record writes them, for the tests that call the Queue's record themselves. */
import type { ResultRow } from "../../src/queue/Queue.js"

/** A successful first attempt of `requestId` by `workerId`. */
export const successOf = (requestId: string, workerId = "w/1"): ResultRow => ({
  requestId,
  attempt: 1,
  workerId,
  status: "success",
  output: { stdout: "" },
  prUrl: null,
  commitSha: null,
  branchName: null,
  durationMs: 5,
  error: null,
  sessionId: null,
  model: null,
  numTurns: null,
  costUsd: null,
  usage: null
})
