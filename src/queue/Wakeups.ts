/**
 * Instant pickup: one LISTEN connection per process tells every idle worker fiber's listener when the
 * insert trigger (or `release_stale_requests`) notifies `stageline_requests`; the claim stage's listener
 * claims for its fiber from that call and wakes it only with a request (see stages/claim.ts). Polling
 * stays as the fallback.
 *
 * The connection is its own `pg.Client`, not the pool's: `PgClient.listen` swallows connection errors, so
 * a dropped listener would go silent. Here a lost connection is reopened with backoff, and every fiber is
 * woken on reconnect to catch up on whatever was inserted while no one was listening. A connection that
 * silently stops carrying bytes raises no error at all, so the listener also asks the server for a sign of
 * life every few seconds, under the query deadline, and reconnects when none comes.
 */
import { Context, Effect, Layer, Redacted } from "effect"
import { connectionConfig, DeadlineClient, deadlines } from "../db/Connections.js"
import { DatabaseUrl } from "../db/Database.js"

export const channel = "stageline_requests"
/** Carries the id of a request cancelled while it runs (see sql/000002). */
export const cancelChannel = "stageline_cancel"

/** How often an idle listener checks that its connection still reaches the server. */
const probeEveryMs = 5_000

/**
 * How long a cancel nobody here watched is remembered: a request claimed (or claimed ahead, see
 * Queue.record) is watched only once its run keeps it, and a cancel in between must not wait for the
 * next heartbeat. A claim ahead waits a tenth of its lease at most, so this covers leases up to 100
 * minutes; with a longer one, the heartbeat still finds such a cancel.
 */
const unwatchedCancelMs = 10 * 60_000
/** At most this many of them are remembered; the oldest go first. */
const unwatchedCancelLimit = 10_000

/** Why a waiting fiber was woken, and the ticket to wait with if it waits on (see WakeupSource.onWake). */
export interface Woken {
  /** A notification that a request became pending (an insert, a release); otherwise the fiber was woken to look. */
  readonly byNotification: boolean
  readonly ticket: number
}

export interface WakeupSource {
  /**
   * Take a ticket before looking for work, and wait with it if none was found: `onWake(ticket, f)` calls
   * `f` at the next wake-up, or at once if one came since the ticket (as woken to look, since which it was
   * is not kept), so a notification that arrives in between is not lost. Returns how to stop listening.
   */
  readonly ticket: Effect.Effect<number>
  readonly onWake: (ticket: number, wake: (woken: Woken) => void) => () => void
  /** Wakes every waiting fiber (used on reconnect, and by tests). */
  readonly wakeAll: Effect.Effect<void>
  /**
   * Calls `onCancel` when `requestId` is cancelled, until the function it returns is called; at once if
   * its cancel was heard at `since` (ms since the epoch) or later, before anyone watched it.
   */
  readonly watchCancel: (requestId: string, since: number, onCancel: () => void) => () => void
}

export class Wakeups extends Context.Tag("stageline/Wakeups")<Wakeups, WakeupSource>() {
  static readonly make = Effect.gen(function* () {
    const url = yield* DatabaseUrl
    const settings = yield* connectionConfig
    let generation = 0
    let listeners = new Set<(woken: Woken) => void>()
    const cancelWatchers = new Map<string, () => void>()
    /** Cancels heard with no watcher, by request, with when; in the order heard. */
    const unwatchedCancels = new Map<string, number>()
    const heardCancel = (requestId: string) => {
      const watcher = cancelWatchers.get(requestId)
      if (watcher) return watcher()
      const now = Date.now()
      unwatchedCancels.delete(requestId)
      unwatchedCancels.set(requestId, now)
      for (const [id, at] of unwatchedCancels) {
        if (at > now - unwatchedCancelMs && unwatchedCancels.size <= unwatchedCancelLimit) break
        unwatchedCancels.delete(id)
      }
    }
    const wake = (byNotification: boolean) => {
      generation++
      const waiting = listeners
      listeners = new Set()
      const woken: Woken = { byNotification, ticket: generation }
      for (const listener of waiting) listener(woken)
    }

    const onWake = (ticket: number, listener: (woken: Woken) => void): (() => void) => {
      if (ticket !== generation) {
        listener({ byNotification: false, ticket: generation })
        return () => {}
      }
      const waiting = listeners
      waiting.add(listener)
      return () => {
        waiting.delete(listener)
      }
    }

    const listenOnce = Effect.async<string>((resume) => {
      const client = new DeadlineClient({
        connectionString: Redacted.value(url),
        application_name: "stageline-listen",
        ...deadlines(settings)
      })
      let done = false
      let probe: ReturnType<typeof setInterval> | undefined
      const finish = (reason: string) => {
        if (done) return
        done = true
        clearInterval(probe)
        client.removeAllListeners("notification")
        client.end().catch(() => {})
        resume(Effect.succeed(reason))
      }
      client.on("error", (error) => finish(error.message))
      client.on("end", () => finish("connection closed"))
      client.on("notification", (message) => {
        if (message.channel === channel) wake(true)
        else if (message.channel === cancelChannel && message.payload) heardCancel(message.payload)
      })
      client
        .connect()
        .then(() => client.query(`LISTEN ${channel}; LISTEN ${cancelChannel}`))
        // Catch up: anything inserted while no one listened is claimable now.
        .then(() => {
          wake(false)
          probe = setInterval(() => {
            client.query("SELECT 1").catch((error: Error) => finish(`no answer from the server: ${error.message}`))
          }, probeEveryMs)
        })
        .catch((error: Error) => finish(error.message))
      return Effect.sync(() => finish("stopped"))
    })

    const listenForever = Effect.gen(function* () {
      let failures = 0
      while (true) {
        const started = Date.now()
        const reason = yield* listenOnce
        if (Date.now() - started > 10_000) failures = 0
        failures++
        const delay = Math.min(250 * 2 ** (failures - 1), 10_000)
        yield* Effect.logWarning(`queue listener lost its connection (${reason}); reconnecting in ${delay} ms`)
        yield* Effect.sleep(delay)
      }
    })
    yield* Effect.forkScoped(listenForever)

    return {
      ticket: Effect.sync(() => generation),
      onWake,
      wakeAll: Effect.sync(() => wake(false)),
      watchCancel: (requestId, since, onCancel) => {
        const heardAt = unwatchedCancels.get(requestId)
        if (heardAt !== undefined) {
          unwatchedCancels.delete(requestId)
          // Heard before this claim was sent, it was about an earlier one (since put back, or taken over).
          if (heardAt >= since) {
            onCancel()
            return () => {}
          }
        }
        cancelWatchers.set(requestId, onCancel)
        return () => {
          if (cancelWatchers.get(requestId) === onCancel) cancelWatchers.delete(requestId)
        }
      }
    } satisfies WakeupSource
  })

  static readonly layer = Layer.scoped(Wakeups, Wakeups.make)
}
