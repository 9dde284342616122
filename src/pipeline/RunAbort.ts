/**
 * Stopping a run early (a cancel, a lost lease): `run.abort` is completed, and whoever guards the stage
 * running now hears of it through a plain callback, so that guarding a stage needs no fiber of its own
 * just to wait for the abort. Everything that aborts a run goes through `abortRun`.
 */
import { Deferred, Exit } from "effect"
import * as OnceEvent from "../concurrency/OnceEvent.js"
import type { RunInfo, StageFailure } from "./RunContext.js"

const aborted = OnceEvent.make<RunInfo, StageFailure>()

/** Aborts the run with `failure`, unless it was aborted already: the first reason stands. */
export const abortRun = (run: RunInfo, failure: StageFailure): void => {
  // Completed before the listeners hear, so that what they run sees the run aborted; a second
  // completion of the Deferred changes nothing, as a second fire does not.
  Deferred.unsafeDone(run.abort, Exit.succeed(failure))
  aborted.fire(run, failure)
}

/** Calls `listener` when the run is aborted, at once if it already was; returns how to stop listening. */
export const onAbort = (run: RunInfo, listener: (failure: StageFailure) => void): (() => void) =>
  aborted.listen(run, listener)
