/**
 * The group commit under the claim and the record (src/db/Batcher.ts), over a statement that is a plain
 * function here: which calls go out together, that each gets its own answer, and what a failure, a caller
 * that stops waiting and a closing scope do.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as Batcher from "../../src/db/Batcher.js"

/** A statement that doubles its items and notes each batch it got; `hold` keeps it in flight. */
const recording = (hold?: Deferred.Deferred<void>) => {
  const batches: Array<ReadonlyArray<number>> = []
  const run = (items: ReadonlyArray<number>) =>
    Effect.suspend(() => {
      batches.push(items)
      return Effect.as(
        hold ? Deferred.await(hold) : Effect.void,
        items.map((n) => n * 2)
      )
    })
  return { batches, run }
}

/** Lets the other fibers run until `done` holds (a statement in flight, calls queued). */
const until = (done: () => boolean) =>
  Effect.gen(function* () {
    for (let turn = 0; turn < 1000 && !done(); turn++) yield* Effect.yieldNow()
    expect(done()).toBe(true)
  })

/** Lets every fiber that can run do so for a while (calls made and queued). */
const settle = Effect.gen(function* () {
  for (let turn = 0; turn < 50; turn++) yield* Effect.yieldNow()
})

/** A batcher whose statement is held in flight, with a first call out in it; `release` lets it answer. */
const withOneInFlight = Effect.gen(function* () {
  const hold = yield* Deferred.make<void>()
  const { batches, run } = recording(hold)
  const call = yield* Batcher.make({ run, maxBatch: 100 })
  const first = yield* Effect.fork(call(1))
  yield* until(() => batches.length === 1)
  return { batches, call, first, release: Deferred.succeed(hold, undefined) }
})

describe("Batcher", () => {
  it.scoped("sends a lone call at once, and the calls made while a statement is in flight together", () =>
    Effect.gen(function* () {
      // The first call goes out alone, with nothing waited for, and is in flight while the others are made.
      const { batches, call, first, release } = yield* withOneInFlight
      const others = yield* Effect.fork(Effect.all([call(2), call(3), call(4)], { concurrency: "unbounded" }))
      yield* settle
      expect(batches).toEqual([[1]])
      yield* release
      expect(yield* Fiber.join(first)).toBe(2)
      expect(yield* Fiber.join(others)).toEqual([4, 6, 8])
      expect(batches).toEqual([[1], [2, 3, 4]])
    })
  )

  it.scoped("sends a longer queue in batches of at most maxBatch", () =>
    Effect.gen(function* () {
      const { batches, run } = recording()
      const call = yield* Batcher.make({ run, maxBatch: 2 })
      const answers = yield* Effect.all([1, 2, 3, 4, 5].map(call), { concurrency: "unbounded" })
      expect(answers).toEqual([2, 4, 6, 8, 10])
      expect(batches.flat()).toEqual([1, 2, 3, 4, 5])
      expect(Math.max(...batches.map((b) => b.length))).toBe(2)
    })
  )

  it.scoped("fails every call of a failed statement with its error, and goes on with the next", () =>
    Effect.gen(function* () {
      let fail = true
      const call = yield* Batcher.make({
        maxBatch: 100,
        run: (items: ReadonlyArray<number>) =>
          fail ? Effect.fail(`statement of ${items.length} failed`) : Effect.succeed(items.map((n) => n + 1))
      })
      const failed = yield* Effect.all([call(1), call(2)].map(Effect.flip), { concurrency: "unbounded" })
      expect(failed).toEqual(["statement of 2 failed", "statement of 2 failed"])
      fail = false
      expect(yield* call(7)).toBe(8)
    })
  )

  it.scoped("dies when the statement answers a different number of calls", () =>
    Effect.gen(function* () {
      const call = yield* Batcher.make({ maxBatch: 100, run: () => Effect.succeed([1, 2]) })
      const exit = yield* Effect.exit(call(1))
      expect(Exit.isFailure(exit) && Exit.isFailure(exit) && String(exit.cause)).toContain(
        "a batch of 1 call(s) got 2 answer(s)"
      )
    })
  )

  it.scoped("a caller that stops waiting leaves its call in the batch; the others get their answers", () =>
    Effect.gen(function* () {
      const { batches, call, first, release } = yield* withOneInFlight
      const leaving = yield* Effect.fork(call(2))
      const staying = yield* Effect.fork(call(3))
      yield* settle
      yield* Fiber.interrupt(leaving)
      yield* release
      expect(yield* Fiber.join(first)).toBe(2)
      expect(yield* Fiber.join(staying)).toBe(6)
      expect(batches).toEqual([[1], [2, 3]])
    })
  )

  it.effect("closing its scope interrupts the calls still waiting, and lets the batch in flight land", () =>
    Effect.gen(function* () {
      const hold = yield* Deferred.make<void>()
      const { batches, run } = recording(hold)
      const scope = yield* Scope.make()
      const call = yield* Scope.extend(Batcher.make({ run, maxBatch: 100 }), scope)
      const inFlight = yield* Effect.fork(call(1))
      yield* until(() => batches.length === 1)
      const waiting = yield* Effect.fork(call(2))
      yield* settle
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      expect(Exit.isInterrupted(yield* Fiber.await(waiting))).toBe(true)
      // The close waits for the statement in flight, whose caller gets its answer.
      yield* Deferred.succeed(hold, undefined)
      yield* Fiber.join(closing)
      expect(yield* Fiber.join(inFlight)).toBe(2)
      expect(batches).toEqual([[1]])
    })
  )
})
