/**
 * The requests that records claim ahead for the worker fibers of one process (see Queue.record): each is
 * held here for its fiber until that fiber's next claim takes it. A record asks for as many as bring its
 * worker's count back to the depth it wants, counting those held and those that records on their way
 * already asked for, so a worker holds at most that many however its records group into statements.
 *
 * A request held here has a lease that nobody renews, and it waits on a fiber that is not free yet: one
 * not taken within the time it was added with is handed to `expire`, which puts it back to pending for
 * whichever worker is free first. So however long the run in front of it turns out to be, a request
 * claimed ahead waits at most that long, and never long enough for its lease to run out.
 */
import { Effect } from "effect"
import type { Claim } from "./Queue.js"

interface Held {
  readonly claim: Claim
  readonly timer: ReturnType<typeof setTimeout>
}

interface Worker {
  readonly held: Array<Held>
  /** Requests that records on their way asked to claim for it. */
  asked: number
  /** Claims waiting for one of those records to be answered. */
  readonly waiting: Array<() => void>
}

export interface ClaimedAhead {
  /**
   * How many requests a record of `workerId` should claim ahead so that it holds `depth`, counting those
   * held and those asked for already; they count as asked for until `answered` is called with them.
   */
  readonly ask: (workerId: string, depth: number) => number
  /** A record that asked for `asked` requests has its answer: what it claimed was added first. */
  readonly answered: (workerId: string, asked: number) => void
  /** Holds `claim` for `workerId`, after those held already, for `freshMs` at most. */
  readonly add: (workerId: string, claim: Claim, freshMs: number) => void
  /** The request held longest for `workerId`, no longer held here; undefined if none is. */
  readonly take: (workerId: string) => Claim | undefined
  /** Every request held for `workerId`, or for every worker when none is named; none is held afterwards. */
  readonly takeAll: (workerId?: string) => Array<readonly [string, Claim]>
  /** Whether a record on its way asked to claim ahead for `workerId`. */
  readonly onItsWay: (workerId: string) => boolean
  /**
   * Once the next record that asked to claim ahead for `workerId` has its answer (at once if none is on
   * its way). Interruptible: waiting claims nothing.
   */
  readonly nextAnswer: (workerId: string) => Effect.Effect<void>
}

export const make = (expire: (workerId: string, claim: Claim) => void): ClaimedAhead => {
  const workers = new Map<string, Worker>()
  const workerOf = (workerId: string) => {
    let worker = workers.get(workerId)
    if (worker === undefined) {
      worker = { held: [], asked: 0, waiting: [] }
      workers.set(workerId, worker)
    }
    return worker
  }

  const take = (workerId: string) => {
    const entry = workers.get(workerId)?.held.shift()
    if (entry === undefined) return undefined
    clearTimeout(entry.timer)
    return entry.claim
  }

  return {
    ask: (workerId, depth) => {
      const worker = workerOf(workerId)
      const wanted = Math.max(0, depth - worker.held.length - worker.asked)
      worker.asked += wanted
      return wanted
    },
    answered: (workerId, asked) => {
      const worker = workerOf(workerId)
      worker.asked -= asked
      // Every waiting claim looks again: at what the answer added, or at the records still on their way.
      for (const wake of worker.waiting.splice(0)) wake()
    },
    add: (workerId, claim, freshMs) => {
      const { held } = workerOf(workerId)
      const entry: Held = {
        claim,
        timer: setTimeout(() => {
          const i = held.indexOf(entry)
          if (i < 0) return
          held.splice(i, 1)
          expire(workerId, claim)
        }, freshMs)
      }
      held.push(entry)
    },
    take,
    takeAll: (workerId) => {
      const taken: Array<readonly [string, Claim]> = []
      for (const w of workerId === undefined ? [...workers.keys()] : [workerId]) {
        for (let claim = take(w); claim !== undefined; claim = take(w)) taken.push([w, claim])
      }
      return taken
    },
    onItsWay: (workerId) => (workers.get(workerId)?.asked ?? 0) > 0,
    nextAnswer: (workerId) =>
      Effect.interruptible(
        Effect.async<void>((resume) => {
          const worker = workerOf(workerId)
          if (worker.asked === 0) return resume(Effect.void)
          const wake = () => resume(Effect.void)
          worker.waiting.push(wake)
          return Effect.sync(() => {
            const i = worker.waiting.indexOf(wake)
            if (i >= 0) worker.waiting.splice(i, 1)
          })
        })
      )
  }
}
