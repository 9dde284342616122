/** The one-line account of an error that the CLI prints and the worker logs while it waits for the database. */
import { describe, expect, it } from "@effect/vitest"
import { Data } from "effect"
import { describeError } from "../../src/errors/Describe.js"

class Tagged extends Data.TaggedError("Tagged")<{ readonly message: string; readonly cause?: unknown }> {}

describe("describeError", () => {
  it("says each cause down the chain after the message", () => {
    const root = new Error("connect ECONNREFUSED 127.0.0.1:5432")
    const pool = new Error("Failed to acquire connection", { cause: root })
    expect(describeError(new Tagged({ message: "cannot reach the database", cause: pool }))).toBe(
      "cannot reach the database: Failed to acquire connection: connect ECONNREFUSED 127.0.0.1:5432"
    )
  })

  it("reads anything with a message as an error, and anything else as its text", () => {
    expect(describeError({ message: "no such pipeline" })).toBe("no such pipeline")
    expect(describeError("plain text")).toBe("plain text")
    expect(describeError(null)).toBe("null")
  })

  it("stops at an error that is its own cause", () => {
    const error = new Error("loop") as Error & { cause?: unknown }
    error.cause = error
    expect(describeError(error)).toBe("loop")
  })
})
