/**
 * How many requests a worker fiber holds claimed ahead (Queue.depthAhead): as many as it runs while one
 * record statement is on its way, one for runs as long as a statement or longer, never more than sixteen.
 */
import { describe, expect, it } from "vitest"
import { depthAhead } from "../../src/queue/Queue.js"

describe("claiming ahead", () => {
  it("holds one for runs as long as a statement or longer, as an agent's are", () => {
    expect(depthAhead(2, 2)).toBe(1)
    expect(depthAhead(90_000, 1.5)).toBe(1)
  })

  it("holds as many as it runs while a statement is on its way, for quicker runs", () => {
    expect(depthAhead(0.5, 2)).toBe(4)
    expect(depthAhead(0.3, 2)).toBe(7)
    expect(depthAhead(1.5, 2)).toBe(2)
  })

  it("holds at most sixteen, however quick its runs", () => {
    expect(depthAhead(0.05, 3)).toBe(16)
    expect(depthAhead(0, 3)).toBe(16)
  })
})
