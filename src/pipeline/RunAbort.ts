/**
 * Stopping a run early (a cancel, a lost lease): `run.abort` is completed, and whoever guards the stage
 * running now hears of it through a plain callback, so that guarding a stage needs no fiber of its own
 * just to wait for the abort. Everything that aborts a run goes through `abortRun`.
 */
import { Deferred, Exit } from "effect"
import type { RunInfo, StageFailure } from "./RunContext.js"

const aborted = new WeakMap<RunInfo, StageFailure>()
const listeners = new WeakMap<RunInfo, Set<(failure: StageFailure) => void>>()

/** Aborts the run with `failure`, unless it was aborted already: the first reason stands. */
export const abortRun = (run: RunInfo, failure: StageFailure): void => {
  if (aborted.has(run)) return
  aborted.set(run, failure)
  Deferred.unsafeDone(run.abort, Exit.succeed(failure))
  const waiting = listeners.get(run)
  listeners.delete(run)
  for (const listener of waiting ?? []) listener(failure)
}

/**
 * Calls `listener` when the run is aborted, at once if it already was; returns how to stop listening.
 */
export const onAbort = (run: RunInfo, listener: (failure: StageFailure) => void): (() => void) => {
  const already = aborted.get(run)
  if (already) {
    listener(already)
    return () => {}
  }
  let set = listeners.get(run)
  if (!set) {
    set = new Set()
    listeners.set(run, set)
  }
  set.add(listener)
  return () => {
    set.delete(listener)
  }
}
