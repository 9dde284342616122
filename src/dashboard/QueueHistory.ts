/**
 * The queue's depth over time, for the dashboard's chart: sampled from the database every
 * `STAGELINE_QUEUE_SAMPLE_MS` (default 5 s) while the server runs, the last 720 samples kept (an hour at
 * the default). Memory only: a restarted worker starts a new history.
 */
import { Config, Context, Effect, Layer } from "effect"
import { type QueueDepth, queueDepth } from "../queue/Admin.js"

export interface Sample extends QueueDepth {
  /** Milliseconds since the epoch. */
  readonly at: number
}

const kept = 720

export class QueueHistory extends Context.Tag("stageline/QueueHistory")<
  QueueHistory,
  { readonly samples: Effect.Effect<ReadonlyArray<Sample>> }
>() {
  static readonly make = Effect.gen(function* () {
    const every = yield* Config.integer("STAGELINE_QUEUE_SAMPLE_MS").pipe(
      Config.validate({ message: "STAGELINE_QUEUE_SAMPLE_MS must be at least 50", validation: (n) => n >= 50 }),
      Config.withDefault(5_000)
    )
    const samples: Array<Sample> = []
    const sample = queueDepth.pipe(
      Effect.timeout("2 seconds"),
      Effect.tap((depth) =>
        Effect.sync(() => {
          samples.push({ at: Date.now(), ...depth })
          if (samples.length > kept) samples.splice(0, samples.length - kept)
        })
      ),
      // A gap in the chart says the database did not answer; the dashboard shows readiness too.
      Effect.ignore
    )
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(sample, Effect.sleep(every))).pipe(Effect.withTracerEnabled(false))
    )
    return { samples: Effect.sync(() => samples.slice()) }
  })

  static readonly layer = Layer.scoped(QueueHistory, QueueHistory.make)
}
