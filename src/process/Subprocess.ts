/**
 * Runs a child process to completion with bounded output, and guarantees that neither it nor anything it
 * started outlives the scope that ran it.
 *
 * The child gets its own process group. Its scope's finalizer ends the whole tree: TERM, a grace period,
 * then KILL, to the group and to every process carrying this run's marker (see ProcessTree), which also
 * finds descendants that left the group. Where `setpriv` exists the child is also started with a
 * parent-death signal, so a worker that is SIGKILLed takes its agents with it.
 *
 * STAGELINE_PARENT_DEATH_SIGNAL=false turns that off. The container image does: there the signal killed
 * healthy agents within a second of their start (Linux sends it when the *thread* that forked the child
 * exits), and it is not needed, because the worker's death ends tini, the container, and every agent in it.
 *
 * The child is started with node's own `spawn`, not `@effect/platform`'s `Command`: Command adds no
 * guarantee this module does not give itself (it sends SIGTERM to the group on interruption, never a
 * SIGKILL), while its stdin feed and its two output Streams cost the worker about 8 ms of CPU per run,
 * measured beside a bare spawn of the same agent; on a busy machine that time is taken from the agents.
 * Here the output is read with plain listeners, and stdin is /dev/null: at its end at once, as an empty
 * feed was (an open stdin with nothing on it makes some programs, the Claude Code CLI, wait for input).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import type { Readable } from "node:stream"
import { StringDecoder } from "node:string_decoder"
import { Data, Deferred, Effect, Exit, Fiber, FiberId, Option, Queue } from "effect"
import { markerVariable, ownerMark, ownerVariable, spawnPoint, terminateTree } from "./ProcessTree.js"

const owner = ownerMark()

export class SubprocessError extends Data.TaggedError("SubprocessError")<{
  readonly reason: "spawn-failed" | "io-failed"
  readonly command: string
  readonly message: string
  readonly cause?: unknown
}> {}

export interface SubprocessSpec {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  /** The whole environment of the child: nothing is inherited implicitly. */
  readonly env: Readonly<Record<string, string>>
  /** Bytes kept of each stream; the rest is counted and dropped. */
  readonly outputLimitBytes: number
  /** How long the child and its descendants get between SIGTERM and SIGKILL. */
  readonly killGraceMs: number
  /** Stop the program (its whole tree) after this long, keeping what it printed. */
  readonly timeoutMs?: number | undefined
  /** Called with each line of stdout as it arrives (lines longer than 1 MiB are cut). */
  readonly onStdoutLine?: ((line: string) => Effect.Effect<void>) | undefined
  /**
   * Completes when the program has said all it had to say (an agent printed its result): if it has not
   * exited by then, its tree is ended and the run counts as finished, not timed out.
   */
  readonly doneWhen?: Effect.Effect<void> | undefined
}

export interface CapturedOutput {
  readonly text: string
  readonly bytes: number
  readonly truncated: boolean
  /** The last non-empty line, kept even when the text was cut (where a program prints its result). */
  readonly lastLine: string
}

export interface SubprocessResult {
  readonly pid: number
  /** Stopped because it ran past `timeoutMs`. */
  readonly timedOut: boolean
  /** Stopped because it was done (see `doneWhen`) and had not exited. */
  readonly endedWhenDone: boolean
  readonly exitCode: number | null
  readonly signal: string | null
  readonly stdout: CapturedOutput
  readonly stderr: CapturedOutput
}

const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => process.platform === "linux" && fs.existsSync(p))

const maxLine = 1024 * 1024

interface Accumulator {
  readonly chunks: Array<Uint8Array>
  kept: number
  bytes: number
  partial: string
  lastLine: string
  readonly decoder: StringDecoder
}

const accumulator = (): Accumulator => ({
  chunks: [],
  kept: 0,
  bytes: 0,
  partial: "",
  lastLine: "",
  // A decoder, so a character split across two chunks is not garbled in a line.
  decoder: new StringDecoder("utf8")
})

/** Keeps what `limit` allows of a chunk, and returns the complete lines it ended. */
const capture = (acc: Accumulator, chunk: Buffer, limit: number): Array<string> => {
  acc.bytes += chunk.length
  if (acc.kept < limit) {
    const part = chunk.length <= limit - acc.kept ? chunk : chunk.subarray(0, limit - acc.kept)
    acc.chunks.push(part)
    acc.kept += part.length
  }
  const lines = (acc.partial + acc.decoder.write(chunk)).split("\n")
  acc.partial = (lines.pop() ?? "").slice(0, maxLine)
  const last = lines.findLast((l) => l.trim() !== "")
  if (last !== undefined) acc.lastLine = last.slice(0, maxLine)
  return lines
}

const snapshot = (acc: Accumulator): CapturedOutput => ({
  text: Buffer.concat(acc.chunks).toString("utf8"),
  bytes: acc.bytes,
  truncated: acc.bytes > acc.kept,
  lastLine: acc.partial.trim() !== "" ? acc.partial : acc.lastLine
})

/** How long output may keep flowing after the program exited (a background child holding its stdout). */
const drainGraceMs = 2_000

/** Lines of stdout waiting for `onStdoutLine` beyond which reading pauses, so a flood waits in the pipe. */
const maxWaitingLines = 1_000

const messageOf = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

type Exited = { readonly exitCode: number | null; readonly signal: string | null }

interface Started {
  readonly child: ChildProcess & {
    readonly stdout: NonNullable<ChildProcess["stdout"]>
    readonly stderr: NonNullable<ChildProcess["stderr"]>
  }
  readonly exited: Deferred.Deferred<Exited>
}

/**
 * Starts the child; its exit is listened for from the start, so it cannot be missed. Reading its output
 * is left to the caller: the streams hold what arrives until a listener takes it.
 */
const start = (spec: SubprocessSpec, argv: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.async<Started, SubprocessError>((resume) => {
    const failed = (cause: unknown) => {
      const missingDir = !fs.existsSync(spec.cwd)
      resume(
        Effect.fail(
          new SubprocessError({
            reason: "spawn-failed",
            command: spec.command,
            message: `cannot start ${spec.command}: ${
              missingDir ? `its working directory ${spec.cwd} does not exist` : messageOf(cause)
            }`,
            cause
          })
        )
      )
    }
    let child: ChildProcess
    try {
      child = spawn(argv[0]!, argv.slice(1), {
        cwd: spec.cwd,
        env,
        stdio: ["ignore", "pipe", "pipe"],
        // Its own process group, which the finalizer signals as a whole.
        detached: true
      })
    } catch (cause) {
      // Arguments the kernel refuses (E2BIG) fail at once rather than by an event.
      return failed(cause)
    }
    const exited = Deferred.unsafeMake<Exited>(FiberId.none)
    child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Exit.succeed({ exitCode: code, signal })))
    child.once("error", failed)
    child.once("spawn", () => {
      child.off("error", failed)
      // Later errors (a signal that could not be sent) are not this run's to fail on; unheard, they would throw.
      child.on("error", () => {})
      resume(Effect.succeed({ child, exited } as Started))
    })
  })

/**
 * Runs the child and waits for it. Interrupting the returned effect (a timeout, a cancel, a shutdown) ends
 * the whole process tree before the interruption completes.
 */
export const runSubprocess = (spec: SubprocessSpec) =>
  Effect.scoped(
    Effect.gen(function* () {
      const token = crypto.randomUUID()
      // Read from the process's environment: it is a property of where the worker runs, not of a pipeline
      // (the pipeline's settings are served through a ConfigProvider of their own).
      const parentDeath = !/^(false|0|no|off)$/i.test(process.env.STAGELINE_PARENT_DEATH_SIGNAL ?? "")
      const argv =
        setpriv && parentDeath
          ? [setpriv, "--pdeathsig", "SIGKILL", "--", spec.command, ...spec.args]
          : [spec.command, ...spec.args]
      // Taken before the start, so that whatever the child starts comes after it (see ProcessTree).
      const point = spawnPoint()
      const { child, exited } = yield* Effect.acquireRelease(
        start(spec, argv, { ...spec.env, [markerVariable]: token, [ownerVariable]: owner }),
        ({ child }) =>
          terminateTree(child.pid!, token, spec.killGraceMs, point).pipe(
            Effect.zipRight(
              Effect.sync(() => {
                child.stdout.destroy()
                child.stderr.destroy()
              })
            )
          )
      )
      const pid = child.pid!
      const out = accumulator()
      const err = accumulator()

      // Each stream is read until it closes; a read error fails the reading, as a failed pipe would.
      const closed = (stream: Readable) => {
        const done = Deferred.unsafeMake<void, unknown>(FiberId.none)
        if (stream.closed) Deferred.unsafeDone(done, Exit.void)
        stream.once("error", (cause) => Deferred.unsafeDone(done, Exit.fail(cause)))
        stream.once("close", () => Deferred.unsafeDone(done, Exit.void))
        return Deferred.await(done)
      }
      const onLine = spec.onStdoutLine
      // Lines go to onLine in order from one fiber; null says stdout has ended.
      const lines = yield* Queue.unbounded<string | null>()
      let waiting = 0
      const offer = (line: string) => {
        if (line.trim() === "") return
        Queue.unsafeOffer(lines, line.slice(0, maxLine))
        if (++waiting > maxWaitingLines && !child.stdout.isPaused()) child.stdout.pause()
      }
      child.stdout.on("data", (chunk: Buffer) => {
        const complete = capture(out, chunk, spec.outputLimitBytes)
        if (onLine) for (const line of complete) offer(line)
      })
      child.stderr.on("data", (chunk: Buffer) => {
        capture(err, chunk, spec.outputLimitBytes)
      })
      const stdoutClosed = closed(child.stdout).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            if (onLine && out.partial.trim() !== "") offer(out.partial)
            Queue.unsafeOffer(lines, null)
          })
        )
      )
      const handLines = Effect.gen(function* () {
        while (true) {
          const batch = yield* Queue.takeAll(lines).pipe(
            Effect.flatMap((taken) =>
              taken.length > 0 ? Effect.succeed(taken) : Queue.takeBetween(lines, 1, Infinity)
            )
          )
          for (const line of batch) {
            if (line === null) return
            if (onLine) yield* onLine(line)
            waiting--
          }
          if (child.stdout.isPaused() && waiting <= maxWaitingLines) child.stdout.resume()
        }
      })
      const readers = yield* Effect.fork(
        Effect.all([stdoutClosed, closed(child.stderr), handLines], { concurrency: "unbounded", discard: true })
      )

      const lingered = { exitCode: null, signal: null, done: true } as const
      const exitOf = Deferred.await(exited)
      const untilDone: Effect.Effect<Exited | typeof lingered> =
        spec.doneWhen === undefined ? exitOf : Effect.raceFirst(exitOf, Effect.as(spec.doneWhen, lingered))
      const finished =
        spec.timeoutMs === undefined
          ? Effect.map(untilDone, Option.some)
          : Effect.timeoutOption(untilDone, spec.timeoutMs)
      const ended = yield* finished
      const timedOut = Option.isNone(ended)
      const endedWhenDone = Option.isSome(ended) && "done" in ended.value
      // Out of time, or done but lingering: end the tree now; what it printed stays in the accumulators.
      if (timedOut || endedWhenDone) yield* terminateTree(pid, token, spec.killGraceMs, point)
      const exit = Option.map(ended, ({ exitCode, signal }): Exited => ({ exitCode, signal }))
      const drained = yield* Fiber.join(readers).pipe(Effect.timeoutOption(drainGraceMs), Effect.either)
      if (drained._tag === "Left") {
        return yield* new SubprocessError({
          reason: "io-failed",
          command: spec.command,
          message: `reading the output of ${spec.command} failed`,
          cause: drained.left
        })
      }
      if (Option.isNone(drained.right)) {
        // Something the program started still holds its output open: the program is done, so end it.
        yield* terminateTree(pid, token, spec.killGraceMs, point)
        yield* Fiber.interrupt(readers)
      }
      const result = Option.getOrElse(exit, () => ({ exitCode: null, signal: null }))
      return {
        pid,
        stdout: snapshot(out),
        stderr: snapshot(err),
        timedOut,
        endedWhenDone,
        ...result
      } satisfies SubprocessResult
    })
  )

/** The first directory on PATH holding an executable `name`, if any. */
export const which = (name: string, pathVariable = process.env.PATH ?? ""): Option.Option<string> => {
  if (name.includes("/")) return isExecutable(name) ? Option.some(name) : Option.none()
  for (const dir of pathVariable.split(":").filter(Boolean)) {
    const candidate = `${dir}/${name}`
    if (isExecutable(candidate)) return Option.some(candidate)
  }
  return Option.none()
}

const isExecutable = (file: string) => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}
