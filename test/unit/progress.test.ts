import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Progress from "../../src/cli/Progress.js"

const id = "3f2a9c1e-0000-4000-8000-000000000001"

/** A view writing into an array, on a clock the test moves. */
const harness = (live: boolean, lastStage?: string) => {
  const out: Array<string> = []
  const clock = { now: 1_000 }
  const view = Progress.make({ lastStage, live, write: (t) => void out.push(t), now: () => clock.now })
  return { out, clock, view }
}

const started = (stage: string) => ({ requestId: id, attempt: 1, kind: "stage-started" as const, stage })
const ended = (stage: string, outcome: "ok" | "failed" | "skipped", durationMs?: number) => ({
  requestId: id,
  attempt: 1,
  kind: "stage-finished" as const,
  stage,
  outcome,
  durationMs
})

const run = (view: Progress.ProgressView, clock: { now: number }) =>
  Effect.gen(function* () {
    yield* view.onEvent({ requestId: id, attempt: 1, kind: "claimed", stage: "claim" })
    yield* view.onEvent(started("prepare-workspace"))
    clock.now += 40
    yield* view.onEvent(ended("prepare-workspace", "ok", 38))
    yield* view.onEvent(started("execute-mclaude"))
    clock.now += 2_100
    yield* view.note("    execute-mclaude: says: hello")
    yield* view.onEvent(ended("execute-mclaude", "failed", 2_100))
    yield* view.onEvent(ended("git", "skipped"))
    yield* view.onEvent(started("record"))
    clock.now += 5
    yield* view.onEvent(ended("record", "ok", 5))
  })

describe("the progress line", () => {
  it.effect("off a terminal, prints the request's line again at each stage start and end", () =>
    Effect.gen(function* () {
      const { out, clock, view } = harness(false, "record")
      yield* run(view, clock)
      expect(out).toEqual([
        "3f2a9c1e #1  ✓ claim\n",
        "3f2a9c1e #1  ✓ claim  ▸ prepare-workspace 0 ms\n",
        "3f2a9c1e #1  ✓ claim  ✓ prepare-workspace 38 ms\n",
        "3f2a9c1e #1  ✓ claim  ✓ prepare-workspace 38 ms  ▸ execute-mclaude 0 ms\n",
        "    execute-mclaude: says: hello\n",
        "3f2a9c1e #1  ✓ claim  ✓ prepare-workspace 38 ms  ✗ execute-mclaude 2.1 s\n",
        "3f2a9c1e #1  ✓ claim  ✓ prepare-workspace 38 ms  ✗ execute-mclaude 2.1 s  – git\n",
        "3f2a9c1e #1  ✓ claim  ✓ prepare-workspace 38 ms  ✗ execute-mclaude 2.1 s  – git  ▸ record 0 ms\n",
        "3f2a9c1e #1  ✓ claim  ✓ prepare-workspace 38 ms  ✗ execute-mclaude 2.1 s  – git  ✓ record 5 ms  — done in 2.1 s\n"
      ])
      expect(yield* view.active).toEqual([])
    })
  )

  it.effect("on a terminal, redraws the live lines in place below what else is printed", () =>
    Effect.gen(function* () {
      const { out, clock, view } = harness(true, "record")
      yield* view.onEvent({ requestId: id, attempt: 1, kind: "claimed", stage: "claim" })
      yield* view.onEvent({ requestId: "aaaaaaaa-1", attempt: 2, kind: "claimed", stage: "claim" })
      // Both lines drawn; the next draw goes back up over them and clears first.
      expect(out.at(-1)).toBe("\x1b[1F\x1b[J3f2a9c1e #1  ✓ claim\naaaaaaaa #2  ✓ claim\n")
      yield* view.note("a note")
      expect(out.at(-1)).toBe("\x1b[2F\x1b[Ja note\n3f2a9c1e #1  ✓ claim\naaaaaaaa #2  ✓ claim\n")
      clock.now += 10
      yield* view.onEvent(started("record"))
      yield* view.onEvent(ended("record", "ok", 3))
      // The finished line is printed above for good; only the other stays live.
      expect(out.at(-1)).toBe(
        "\x1b[2F\x1b[J3f2a9c1e #1  ✓ claim  ✓ record 3 ms  — done in 10 ms\naaaaaaaa #2  ✓ claim\n"
      )
      yield* view.finish("aaaaaaaa-1", 2)
      expect(out.at(-1)).toBe("\x1b[1F\x1b[Jaaaaaaaa #2  ✓ claim  — done in 0 ms\n")
      expect(yield* view.active).toEqual([])
    })
  )
})
