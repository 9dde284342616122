/**
 * Whether this worker process is still taking work. The claim stage asks before every claim and waits on
 * for the shutdown while idle, so a shutdown stops claiming at once and never abandons a row it just
 * claimed. The shutdown starts through `Lifecycle.drain`, which also wakes the fibers waiting for work.
 */
import { Context, Data, Deferred, Effect, Exit, Layer, Ref } from "effect"
import * as OnceEvent from "../concurrency/OnceEvent.js"

/** The claim stage's way of saying "no more requests for this fiber": not a failure of any request. */
export class WorkerStopping extends Data.TaggedError("WorkerStopping")<{
  readonly reason: "draining" | "queue-empty"
  readonly message: string
}> {}

/**
 * Where the supervisor is: `starting` until its fibers are forked (migrations run before), `running` while
 * they are, `stopped` once they have all ended, for whatever reason. `/healthz` reports it.
 */
export type SupervisorState = "starting" | "running" | "stopped"

export interface LifecycleState {
  /** Completed when the process starts shutting down. */
  readonly draining: Deferred.Deferred<void>
  /** `--once`: stop each worker fiber as soon as it finds the queue empty. */
  readonly once: boolean
  readonly supervisor: Ref.Ref<SupervisorState>
}

export class Lifecycle extends Context.Tag("stageline/Lifecycle")<Lifecycle, LifecycleState>() {
  static readonly layer = (options: { readonly once: boolean }) =>
    Layer.effect(
      Lifecycle,
      Effect.all({ draining: Deferred.make<void>(), supervisor: Ref.make<SupervisorState>("starting") }).pipe(
        Effect.map(({ draining, supervisor }) => ({ draining, supervisor, once: options.once }))
      )
    )

  static readonly isDraining = Effect.flatMap(Lifecycle, (l) => Deferred.isDone(l.draining))

  /** Starts the shutdown: `draining` completes, and every fiber waiting for work hears at once. */
  static readonly drain = Effect.flatMap(Lifecycle, (l) =>
    Effect.sync(() => {
      Deferred.unsafeDone(l.draining, Exit.void)
      drained.fire(l, undefined)
    })
  )
}

const drained = OnceEvent.make<LifecycleState, void>()

/**
 * Calls `listener` when the shutdown starts (through `Lifecycle.drain`), at once if it has; returns how
 * to stop listening. For a wait that needs no fiber of its own.
 */
export const onDrain = (lifecycle: LifecycleState, listener: () => void): (() => void) =>
  drained.listen(lifecycle, listener)
