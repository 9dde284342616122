/**
 * Group commit for calls that many fibers make at once: each call waits for its own answer, while one
 * fiber sends the calls that queued up in one statement. Nothing waits on a timer: a call that finds the
 * batcher idle goes out at once, alone; the calls that arrive while a statement is in flight go out
 * together in the next one. So one fiber pays what it paid before, and sixteen pay one round trip, one
 * commit and one statement's parsing instead of sixteen.
 *
 * A statement that fails fails every call in it with the same error: each caller decides, as it did
 * alone, whether to try again.
 */
import { Effect, Exit, FiberId, type Scope } from "effect"

export interface BatcherOptions<I, O, E> {
  /** Answers the calls, one result per item and in their order. */
  readonly run: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, E>
  /** Calls per statement at most; a longer queue goes out in several. */
  readonly maxBatch: number
}

/**
 * A batcher's entry: a call whose caller waits for its answer; `send` queues the same call and hands its
 * answer to a callback instead, for a caller with no fiber to wait in.
 */
export interface Batched<I, O, E> {
  (item: I): Effect.Effect<O, E>
  readonly send: (item: I, answer: (exit: Exit.Exit<O, E>) => void) => void
}

interface Call<I, O, E> {
  readonly item: I
  /** Resumes the caller, unless it stopped waiting. */
  readonly answer: (exit: Exit.Exit<O, E>) => void
}

/**
 * Callers and the sender wake each other through plain callbacks: a Deferred for each call and each batch
 * cost more to make than the rest of the call did.
 */
export const make = <I, O, E>(options: BatcherOptions<I, O, E>): Effect.Effect<Batched<I, O, E>, never, Scope.Scope> =>
  Effect.gen(function* () {
    let queued: Array<Call<I, O, E>> = []
    /** Set while the sender waits for calls. */
    let wakeSender: (() => void) | null = null

    const sendBatch = (batch: ReadonlyArray<Call<I, O, E>>) =>
      Effect.flatMap(Effect.exit(options.run(batch.map((call) => call.item))), (exit) =>
        Effect.sync(() => {
          const answers: Exit.Exit<ReadonlyArray<O>, E> = Exit.isSuccess(exit) && exit.value.length !== batch.length
            ? Exit.die(new Error(`a batch of ${batch.length} call(s) got ${exit.value.length} answer(s)`))
            : exit
          batch.forEach((call, i) => {
            call.answer(Exit.map(answers, (values) => values[i] as O))
          })
        })
      )

    const callsQueued = Effect.async<void>((resume) => {
      if (queued.length > 0) return resume(Effect.void)
      wakeSender = () => {
        wakeSender = null
        resume(Effect.void)
      }
      return Effect.sync(() => {
        wakeSender = null
      })
    })

    const sender = Effect.gen(function* () {
      while (true) {
        yield* callsQueued
        while (queued.length > 0) {
          const batch = queued.slice(0, options.maxBatch)
          queued = queued.slice(batch.length)
          // Taken from the queue, a batch is answered even if the layer is closing meanwhile.
          yield* Effect.uninterruptible(sendBatch(batch))
        }
      }
    })
    // Its statements belong to no request: each caller's own span says what it waited for.
    yield* Effect.forkScoped(sender.pipe(Effect.withTracerEnabled(false)))
    // Closing: calls still waiting for a statement are interrupted, not left waiting forever.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        const left = queued
        queued = []
        for (const call of left) call.answer(Exit.interrupt(FiberId.none))
      })
    )

    const send = (item: I, answer: (exit: Exit.Exit<O, E>) => void) => {
      queued.push({ item, answer })
      wakeSender?.()
    }
    const call = (item: I) =>
      Effect.async<O, E>((resume) => {
        let waiting = true
        send(item, (exit) => {
          if (!waiting) return
          waiting = false
          resume(exit)
        })
        // A caller that stops waiting leaves its call in its batch: what the statement does is not undone.
        return Effect.sync(() => {
          waiting = false
        })
      })
    return Object.assign(call, { send })
  })
