/**
 * What the runner alone costs a no-op request, free of the database and of the machine's noise: the real
 * compiled engine (runner, claim and record stages, batchers, leases, recorder, event log, metrics) taking N requests
 * through `bench/pipelines/noop.yaml` at a concurrency, while the claim and record statements, the event
 * inserts and the NOTIFY listener are stand-ins that answer on the next turn of the event loop. Not a
 * target and not part of `npm run bench`; a profiling aid for the runner's own CPU.
 *
 *   npm run bench:runner                      20,000 requests at concurrency 16
 *   RUNNER_N=50000 RUNNER_C=64 npm run bench:runner
 *   node --cpu-prof --import tsx bench/runner-cpu.ts    the same, profiled
 *   RUNNER_COUNT_OPS=1 npm run bench:runner   also counts the Effect operations a request takes, by kind
 *                                             (the count slows the run: its timings are not the runner's)
 */
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, Option, RuntimeFlags, RuntimeFlagsPatch, Supervisor } from "effect"
import type pg from "pg"
import { engineModule } from "./support/stageline.js"
import { noopPipeline } from "./support/systems.js"

const Batcher = await engineModule<typeof import("../src/db/Batcher.js")>("db/Batcher")
const { RegistryLive } = await engineModule<typeof import("../src/cli/Cli.js")>("cli/Cli")
const Logging = await engineModule<typeof import("../src/cli/Logging.js")>("cli/Logging")
const Compiler = await engineModule<typeof import("../src/pipeline/Compiler.js")>("pipeline/Compiler")
const { WorkerConfig } = await engineModule<typeof import("../src/config/WorkerConfig.js")>("config/WorkerConfig")
const EventLog = await engineModule<typeof import("../src/queue/EventLog.js")>("queue/EventLog")
const { Leases } = await engineModule<typeof import("../src/queue/Lease.js")>("queue/Lease")
const { Lifecycle } = await engineModule<typeof import("../src/worker/Lifecycle.js")>("worker/Lifecycle")
const { PgPool } = await engineModule<typeof import("../src/db/Prepared.js")>("db/Prepared")
const { Queue } = await engineModule<typeof import("../src/queue/Queue.js")>("queue/Queue")
const ClaimedAhead = await engineModule<typeof import("../src/queue/ClaimedAhead.js")>("queue/ClaimedAhead")
const { Recorder } = await engineModule<typeof import("../src/queue/Recorder.js")>("queue/Recorder")
const { decodeClaimedRow } = await engineModule<typeof import("../src/queue/Request.js")>("queue/Request")
const { runOnce } = await engineModule<typeof import("../src/pipeline/Runner.js")>("pipeline/Runner")
const Tracing = await engineModule<typeof import("../src/tracing/Tracing.js")>("tracing/Tracing")
const { Wakeups } = await engineModule<typeof import("../src/queue/Wakeups.js")>("queue/Wakeups")
type QueueService = import("../src/queue/Queue.js").QueueService
type Claim = import("../src/queue/Queue.js").Claim
type WakeupSource = import("../src/queue/Wakeups.js").WakeupSource

// As in the other benchmarks, the worker logs warnings only: a line per request would be most of the cost.
process.env.LOG_LEVEL ??= "warning"
const n = Number(process.env.RUNNER_N ?? 20_000)
const concurrency = Number(process.env.RUNNER_C ?? 16)

/** An answer on the next turn of the event loop, as from a database that takes no time. */
const nextTurn = <A>(answer: () => A) =>
  Effect.async<A>((resume) => {
    setImmediate(() => resume(Effect.succeed(answer())))
  })

let claimed = 0
// Decoded from a plain row, as Queue decodes the rows its statements return.
const request = (workerId: string) =>
  decodeClaimedRow({
    id: crypto.randomUUID(),
    created_at: new Date(),
    status: "processing",
    repo_url: null,
    branch: null,
    prompt: "noop",
    config: null,
    metadata: null,
    run_after: new Date(),
    claimed_at: new Date(),
    claimed_by: workerId,
    attempts: 1,
    max_attempts: null,
    priority: 0
  })

// The queue's statements, grouped by the real batchers as the worker groups them.
const queue = Layer.scoped(
  Queue,
  Effect.gen(function* () {
    const claimTogether = yield* Batcher.make({
      maxBatch: 100,
      run: (workers: ReadonlyArray<string>) =>
        nextTurn(() =>
          workers.map((w) => (claimed++ < n ? Option.some({ request: request(w), sentAt: Date.now() }) : Option.none()))
        )
    })
    // As the worker's record does, one that asks for the next request claims it for its worker, and
    // that worker's claim then takes it without a statement, waiting for it while it is on its way (the
    // record is written behind the run): the queue's own ClaimedAhead, one request deep.
    const ahead = ClaimedAhead.make(() => {})
    const recordTogether = yield* Batcher.make({
      maxBatch: 100,
      run: (calls: ReadonlyArray<{ readonly workerId: string; readonly claims: number }>) =>
        nextTurn(() =>
          calls.map((c) => {
            for (let i = 0; i < c.claims && claimed++ < n; i++) {
              ahead.add(c.workerId, { request: request(c.workerId), sentAt: Date.now() }, 60_000)
            }
            return "recorded" as const
          })
        )
    })
    const claim = (workerId: string): Effect.Effect<Option.Option<Claim>> =>
      Effect.suspend(() => {
        const taken = ahead.take(workerId)
        if (taken !== undefined) return Effect.succeed(Option.some(taken))
        if (ahead.onItsWay(workerId)) return Effect.zipRight(ahead.nextAnswer(workerId), claim(workerId))
        return claimTogether(workerId)
      })
    const service: QueueService = {
      claim,
      // `once`: a fiber never waits idle.
      claimIdle: () => () => {},
      record: (result, _retry, next) =>
        Effect.suspend(() => {
          const { workerId } = result
          const claims = next === undefined ? 0 : ahead.ask(workerId, 1)
          const call = recordTogether({ workerId, claims })
          return claims === 0
            ? call
            : Effect.ensuring(
                call,
                Effect.sync(() => ahead.answered(workerId, claims))
              )
        }),
      recordThen: (result, _retry, next, done) => {
        const { workerId } = result
        const claims = next === undefined ? 0 : ahead.ask(workerId, 1)
        recordTogether.send({ workerId, claims }, (exit) => {
          if (claims > 0) ahead.answered(workerId, claims)
          done(exit)
        })
      },
      releaseAhead: (workerId) => Effect.sync(() => ahead.takeAll(workerId)),
      heartbeat: (leases) => Effect.succeed(new Map(leases.map((l) => [l.requestId, "held" as const]))),
      rescue: () => Effect.succeed([]),
      release: () => Effect.succeed("pending" as const),
      enqueue: () => Effect.die("not used"),
      status: Effect.die("not used")
    }
    return service
  })
)

const wakeups: WakeupSource = {
  ticket: Effect.succeed(0),
  onWake: () => () => {},
  wakeAll: Effect.void,
  watchCancel: () => () => {}
}

/** The event log's statements: a pool whose one connection answers every query with no rows. */
const pool = {
  connect: (use: (error: undefined, client: unknown, release: () => void) => void) =>
    use(
      undefined,
      {
        query: (_: unknown, done: (error: undefined, result: { rows: [] }) => void) =>
          setImmediate(() => done(undefined, { rows: [] }))
      },
      () => {}
    )
} as unknown as pg.Pool

const config = WorkerConfig.layer({})
const services = Layer.mergeAll(
  Recorder.layer.pipe(
    Layer.provideMerge(Leases.layer.pipe(Layer.provideMerge(Layer.merge(queue, Layer.succeed(Wakeups, wakeups)))))
  ),
  EventLog.layer(),
  Lifecycle.layer({ once: true })
).pipe(Layer.provideMerge(config), Layer.provide(Layer.succeed(PgPool, pool)))

const main = Effect.gen(function* () {
  const pipeline = yield* Compiler.load(noopPipeline)
  let done = 0
  const started = performance.now()
  const cpu = process.cpuUsage()
  yield* Effect.forEach(
    Array.from({ length: concurrency }, (_, i) => `bench/${i + 1}`),
    (workerId) =>
      Effect.gen(function* () {
        // `once`: a fiber stops when the stand-in queue runs dry.
        while ((yield* runOnce(pipeline, workerId))._tag === "Processed") done++
      }),
    { concurrency: "unbounded", discard: true }
  )
  const wallUs = ((performance.now() - started) * 1000) / done
  const used = process.cpuUsage(cpu)
  const cpuUs = (used.user + used.system) / done
  console.log(
    `${done} no-op requests at concurrency ${concurrency}: ${wallUs.toFixed(1)} µs of wall time and ${cpuUs.toFixed(1)} µs of CPU (garbage collection threads included) each`
  )
})

/**
 * Counts every operation the run loop evaluates, by its opcode, through a supervisor's `onEffect`, which
 * the runtime calls for each operation once op supervision is on.
 */
class OperationCounter extends Supervisor.AbstractSupervisor<void> {
  readonly value = Effect.void
  readonly byKind = new Map<string, number>()
  total = 0
  override onEffect(_fiber: unknown, effect: Effect.Effect<unknown, unknown, unknown>) {
    this.total++
    const kind = String((effect as { readonly _op?: unknown })._op)
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1)
  }
}

const counted = (effect: Effect.Effect<void>) => {
  if (process.env.RUNNER_COUNT_OPS !== "1") return effect
  const counter = new OperationCounter()
  return effect.pipe(
    Effect.supervised(counter),
    Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision)),
    Effect.tap(() =>
      Effect.sync(() => {
        const per = (count: number) => (count / n).toFixed(1)
        console.log(`${per(counter.total)} Effect operations a request, by kind:`)
        for (const [kind, count] of [...counter.byKind].sort((a, b) => b[1] - a[1])) {
          console.log(`  ${kind.padEnd(22)} ${per(count)}`)
        }
      })
    )
  )
}

// A stage may ask for the SQL client, the agent's settings and the pipeline's location; the noop pipeline's
// stages use none of them, so they are not provided, and the type is told so.
const needsNoMore = counted(main as Effect.Effect<void>) as Effect.Effect<void, unknown>

await Effect.runPromise(
  needsNoMore.pipe(
    Effect.provide(services),
    Effect.provide(RegistryLive),
    Effect.provide(Layer.mergeAll(NodeContext.layer, Logging.layer, Tracing.layer))
  )
)
