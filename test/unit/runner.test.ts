/**
 * The engine's own semantics (retry, timeout, after-failure, bad stage output), with small stages made
 * through the same `Stage.make` and registry a plugin uses.
 */
import { describe, expect, it } from "@effect/vitest"
import { Data, Effect, HashMap, Layer, Logger, LogLevel, Schema } from "effect"
import { compile, type PipelineInvalid } from "../../src/pipeline/Compiler.js"
import { abortRun } from "../../src/pipeline/RunAbort.js"
import type { StageFailure, StageOutput } from "../../src/pipeline/RunContext.js"
import { type RunOutcome, runOnce } from "../../src/pipeline/Runner.js"
import * as Stage from "../../src/pipeline/Stage.js"
import { StageRegistry } from "../../src/pipeline/StageRegistry.js"
import { ClaimedRequest } from "../../src/queue/Request.js"

class Flaky extends Data.TaggedError("Flaky")<{ readonly message: string }> {}
class Fatal extends Data.TaggedError("Fatal")<{ readonly message: string }> {}

const calls: Record<string, Array<number>> = {}
const note = (name: string) => {
  calls[name] ??= []
  calls[name].push(Date.now())
}

const request = ClaimedRequest.make({
  id: "00000000-0000-4000-8000-00000000000a",
  created_at: new Date(),
  status: "processing",
  repo_url: null,
  branch: "main",
  prompt: "p",
  config: null,
  metadata: null,
  claimed_at: new Date(),
  claimed_by: "w",
  attempts: 1,
  max_attempts: null,
  priority: 0
})

const fakeClaim = Stage.make({
  name: "fake-claim",
  description: "yields one request",
  options: Schema.Struct({}),
  requires: [],
  provides: ["request"],
  run: () => () => Effect.succeed({ request })
})

const failing = Stage.make({
  name: "failing",
  description: "fails with the tag it is given",
  options: Schema.Struct({ tag: Schema.Literal("Flaky", "Fatal"), succeed_on: Schema.optional(Schema.Number) }),
  requires: ["request"],
  provides: [],
  run: (options) => () =>
    Effect.suspend((): Effect.Effect<StageOutput<never>, Flaky | Fatal> => {
      note("failing")
      if (options.succeed_on !== undefined && calls.failing!.length >= options.succeed_on) return Effect.succeed({})
      return options.tag === "Flaky"
        ? Effect.fail(new Flaky({ message: "flaked" }))
        : Effect.fail(new Fatal({ message: "broke" }))
    })
})

const slow = Stage.make({
  name: "slow",
  description: "sleeps",
  options: Schema.Struct({ ms: Schema.Number }),
  requires: ["request"],
  provides: [],
  run: (options) => () => Effect.as(Effect.sleep(options.ms), {})
})

const observer = Stage.make({
  name: "observer",
  description: "records that it ran, and what failure it saw",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: [],
  run: () => (input) =>
    Effect.sync(() => {
      note("observer")
      seen.push(input.failure ?? null)
      return {}
    })
})
const seen: Array<StageFailure | null> = []

const liar = Stage.make({
  name: "liar",
  description: "promises a workspace and returns none",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: ["workspace"],
  run: () => () => Effect.succeed({} as never)
})

const thrower = Stage.make({
  name: "thrower",
  description: "throws",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: [],
  run: () => () =>
    Effect.sync(() => {
      throw new Error("plugin bug")
    })
})

const talker = Stage.make({
  name: "talker",
  description: "logs a line",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: [],
  run: () => () => Effect.as(Effect.logInfo("inside the stage"), {})
})

/** Busy for `busy_ms` before it first waits, then sleeps `sleep_ms`. */
const busyThenSlow = Stage.make({
  name: "busy-then-slow",
  description: "computes, then sleeps",
  options: Schema.Struct({ busy_ms: Schema.Number, sleep_ms: Schema.Number }),
  requires: ["request"],
  provides: [],
  run: (options) => () =>
    Effect.suspend(() => {
      const until = Date.now() + options.busy_ms
      while (Date.now() < until) {
        // A stage's own computation, which no timer can interrupt.
      }
      return Effect.as(Effect.sleep(options.sleep_ms), {})
    })
})

/** Aborts its own run, as a stage that finds its request must stop may, and returns without waiting. */
const selfAborting = Stage.make({
  name: "self-aborting",
  description: "aborts its run",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: [],
  run: () => (input) =>
    Effect.sync(() => {
      note("self-aborting")
      abortRun(input.run, {
        stage: "self-aborting",
        origin: "test",
        tag: "Cancelled",
        message: "the stage stopped its run",
        status: "cancelled"
      })
      return {}
    })
})

const Registry = StageRegistry.stages("test", [
  fakeClaim,
  failing,
  slow,
  observer,
  liar,
  thrower,
  talker,
  busyThenSlow,
  selfAborting
]).pipe(Layer.provideMerge(StageRegistry.layer))

const runPipeline = (stages: string) =>
  Effect.gen(function* () {
    for (const key of Object.keys(calls)) delete calls[key]
    seen.length = 0
    const pipeline = yield* compile("/t.yaml", `name: t\nstages:\n  - fake-claim\n${stages}`)
    return yield* runOnce(pipeline, "worker-test")
    // These stages use no services; the runner's type asks for all a stage may use.
  }).pipe(Effect.provide(Registry)) as Effect.Effect<RunOutcome, PipelineInvalid>

const failureOf = (outcome: RunOutcome) => (outcome._tag === "Processed" ? outcome.failure : undefined)

describe("the pipeline runner", () => {
  it.live("retries a stage exactly `times` times, waiting the backoff between attempts", () =>
    Effect.gen(function* () {
      const outcome = yield* runPipeline(`  - use: failing
    with: { tag: Flaky }
    retry: { times: 3, backoff: { type: fixed, base: 60ms } }
`)
      expect(calls.failing).toHaveLength(4)
      const gaps = calls.failing!.slice(1).map((t, i) => t - calls.failing![i]!)
      for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(55)
      expect(failureOf(outcome)).toMatchObject({ stage: "failing", tag: "Flaky", status: "error" })
    })
  )

  it.live("doubles an exponential backoff up to its cap", () =>
    Effect.gen(function* () {
      yield* runPipeline(`  - use: failing
    with: { tag: Flaky }
    retry: { times: 3, backoff: { type: exponential, base: 40ms, cap: 100ms } }
`)
      const gaps = calls.failing!.slice(1).map((t, i) => t - calls.failing![i]!)
      expect(gaps).toHaveLength(3)
      expect(gaps[0]).toBeGreaterThanOrEqual(35)
      expect(gaps[1]).toBeGreaterThanOrEqual(75)
      expect(gaps[2]).toBeGreaterThanOrEqual(95)
    })
  )

  it.live("stops retrying once the stage succeeds", () =>
    Effect.gen(function* () {
      const outcome = yield* runPipeline(`  - use: failing
    with: { tag: Flaky, succeed_on: 2 }
    retry: { times: 5, backoff: { type: fixed, base: 10ms } }
`)
      expect(calls.failing).toHaveLength(2)
      expect(failureOf(outcome)).toBeNull()
    })
  )

  it.live("does not retry a tag that retry_on does not name", () =>
    Effect.gen(function* () {
      const outcome = yield* runPipeline(`  - use: failing
    with: { tag: Fatal }
    retry: { times: 3, backoff: { type: fixed, base: 10ms }, retry_on: [Flaky] }
`)
      expect(calls.failing).toHaveLength(1)
      expect(failureOf(outcome)).toMatchObject({ tag: "Fatal", message: "broke" })
    })
  )

  it.live("fails a stage that runs past its timeout, as a timeout", () =>
    Effect.gen(function* () {
      const outcome = yield* runPipeline(`  - use: slow
    with: { ms: 5000 }
    timeout: 100ms
`)
      expect(failureOf(outcome)).toMatchObject({ stage: "slow", tag: "StageTimeout", status: "timeout" })
    })
  )

  it.live("counts what a stage computes before it first waits within its timeout", () =>
    Effect.gen(function* () {
      // 300 ms of computation and 300 ms of sleep: past a 450 ms timeout only if both count.
      const outcome = yield* runPipeline(`  - use: busy-then-slow
    with: { busy_ms: 300, sleep_ms: 300 }
    timeout: 450ms
`)
      expect(failureOf(outcome)).toMatchObject({ stage: "busy-then-slow", tag: "StageTimeout" })
    })
  )

  it.live("fails the run with the reason a stage gave when it aborted its own run, though it then returned", () =>
    Effect.gen(function* () {
      const outcome = yield* runPipeline(`  - self-aborting
  - id: later
    use: observer
  - id: cleanup
    use: observer
    after_failure: true
`)
      const reason = {
        stage: "self-aborting",
        tag: "Cancelled",
        message: "the stage stopped its run",
        status: "cancelled"
      }
      expect(failureOf(outcome)).toMatchObject(reason)
      expect(calls["self-aborting"]).toHaveLength(1)
      // Only the stage that runs after failures ran, and it saw why.
      expect(seen).toEqual([expect.objectContaining(reason)])
    })
  )

  it.live("skips later stages after a failure, except those that run after failures", () =>
    Effect.gen(function* () {
      yield* runPipeline(`  - use: failing
    with: { tag: Fatal }
  - id: skipped
    use: observer
  - id: cleanup
    use: observer
    after_failure: true
`)
      expect(calls.observer).toHaveLength(1)
      expect(seen[0]).toMatchObject({ stage: "failing", tag: "Fatal" })
    })
  )

  it.live("fails a stage that does not return what it provides, naming it", () =>
    Effect.gen(function* () {
      const outcome = yield* runPipeline("  - liar\n")
      expect(failureOf(outcome)).toMatchObject({
        stage: "liar",
        tag: "StageCrashed",
        message: 'stage "liar" promised "workspace" but did not return it'
      })
    })
  )

  it.live("turns a stage that throws into a failure of the request, not of the worker", () =>
    Effect.gen(function* () {
      const outcome = yield* runPipeline("  - thrower\n  - use: observer\n    after_failure: true\n")
      expect(failureOf(outcome)).toMatchObject({ stage: "thrower", tag: "StageCrashed" })
      expect(failureOf(outcome)!.message).toContain("plugin bug")
      expect(calls.observer).toHaveLength(1)
    })
  )

  it.effect(
    "names the worker, request, attempt and stage on a stage's log lines, and leaves the caller's as they were",
    () =>
      Effect.gen(function* () {
        const lines: Array<{ message: string; annotations: Record<string, unknown> }> = []
        const capture = Logger.make(({ message, annotations }) => {
          lines.push({ message: String(message), annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
        })
        yield* Effect.gen(function* () {
          yield* runPipeline("  - talker\n")
          yield* Effect.logInfo("after the run")
        }).pipe(
          Effect.annotateLogs({ caller: "outer" }),
          Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
          Logger.withMinimumLogLevel(LogLevel.Info)
        )
        expect(lines.find((l) => l.message === "inside the stage")?.annotations).toEqual({
          caller: "outer",
          worker_id: "worker-test",
          request_id: request.id,
          attempt: 1,
          stage: "talker"
        })
        expect(lines.find((l) => l.message.startsWith("claimed request"))?.annotations).toMatchObject({
          request_id: request.id,
          stage: "fake-claim"
        })
        // The run's last line speaks as its last stage.
        expect(lines.find((l) => l.message.includes("ran every stage"))?.annotations).toMatchObject({
          request_id: request.id,
          stage: "talker"
        })
        expect(lines.find((l) => l.message === "after the run")?.annotations).toEqual({ caller: "outer" })
      })
  )
})

describe("a stage's when", () => {
  it.live("runs the stage only when its condition holds on the run context", () =>
    Effect.gen(function* () {
      yield* runPipeline(`  - id: on-main
    use: observer
    when: { equals: { path: request.branch, value: main } }
  - id: on-other
    use: observer
    when: { equals: { path: request.branch, value: develop } }
  - id: has-prompt
    use: observer
    when: { exists: request.prompt }
  - id: no-repo
    use: observer
    when: { missing: request.repo_url }
  - id: not-main
    use: observer
    when: { not_equals: { path: request.branch, value: main } }
`)
      // on-main, has-prompt and no-repo ran; on-other and not-main were skipped.
      expect(calls.observer).toHaveLength(3)
    })
  )

  it.effect("is checked at load: the field it tests must come from an earlier stage", () =>
    Effect.gen(function* () {
      const error = yield* compile(
        "/t.yaml",
        "name: t\nstages:\n  - fake-claim\n  - use: observer\n    when: { exists: git.prUrl }\n"
      ).pipe(
        Effect.provide(Registry),
        Effect.flip,
        Effect.map((e) => e as PipelineInvalid)
      )
      expect(error.problems[0]).toMatchObject({ line: 5, stage: "observer", field: "when" })
      expect(error.problems[0]!.message).toBe('tests "git.prUrl", but no earlier stage provides "git"')
    })
  )
})
