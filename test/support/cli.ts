/**
 * The `stageline` command as a real child process, for tests of what only a process shows: signals,
 * exit codes, output.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"

export const bin = path.join(import.meta.dirname, "..", "..", "bin", "stageline.mjs")

export interface Running {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export const startCli = (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}): Running => {
  const child = spawn(process.execPath, [bin, ...args], {
    env: { ...process.env, LOG_FORMAT: "json", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout!.on("data", (d) => {
    output += d
  })
  child.stderr!.on("data", (d) => {
    output += d
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal }))
  )
  return { child, output: () => output, exited }
}

export const runCli = async (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) => {
  const running = startCli(args, env)
  const { code } = await running.exited
  return { code, output: running.output() }
}

/** How long a test gives a `stageline` process to start (loading its modules alone can take seconds here). */
export const startup = 90_000

/** Polls `check` until it returns a value, or fails after `ms`. */
export const waitFor = async <A>(what: string, check: () => Promise<A | undefined | null | false>, ms = 20_000) => {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    const value = await check()
    if (value) return value
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}
