/**
 * Runs a child process to completion with bounded output, and guarantees that neither it nor anything it
 * started outlives the scope that ran it.
 *
 * `@effect/platform`'s `Command` gives the child its own process group and sends SIGTERM on interruption,
 * but never follows up with SIGKILL and never looks for descendants that left the group. The finalizer
 * added here runs before Command's own: TERM, a grace period, then KILL, to the group and to every
 * process carrying this run's marker (see ProcessTree). Where `setpriv` exists the child is also started
 * with a parent-death signal, so a worker that is SIGKILLed takes its agents with it.
 *
 * STAGELINE_PARENT_DEATH_SIGNAL=false turns that off. The container image does: there the signal killed
 * healthy agents within a second of their start (Linux sends it when the *thread* that forked the child
 * exits), and it is not needed, because the worker's death ends tini, the container, and every agent in it.
 */
import * as fs from "node:fs"
import { StringDecoder } from "node:string_decoder"
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import { Data, Effect, Fiber, Option, Stream } from "effect"
import { markerVariable, ownerMark, ownerVariable, terminateTree } from "./ProcessTree.js"

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

/**
 * Reads a stream into `acc` as it arrives: what was read is there even if reading is cut short (a
 * timeout), so a stopped program's last words are kept.
 */
const captureInto = (
  stream: Stream.Stream<Uint8Array, unknown>,
  acc: Accumulator,
  limit: number,
  onLine?: (line: string) => Effect.Effect<void>
) =>
  Stream.runForEach(stream, (chunk) => {
    acc.bytes += chunk.length
    if (acc.kept < limit) {
      const part = chunk.length <= limit - acc.kept ? chunk : chunk.subarray(0, limit - acc.kept)
      acc.chunks.push(part)
      acc.kept += part.length
    }
    const lines = (acc.partial + acc.decoder.write(Buffer.from(chunk))).split("\n")
    acc.partial = (lines.pop() ?? "").slice(0, maxLine)
    const last = lines.findLast((l) => l.trim() !== "")
    if (last !== undefined) acc.lastLine = last.slice(0, maxLine)
    if (!onLine) return Effect.void
    return Effect.forEach(lines, (line) => (line.trim() === "" ? Effect.void : onLine(line.slice(0, maxLine))), {
      discard: true
    })
  }).pipe(Effect.tap(() => (onLine && acc.partial.trim() !== "" ? onLine(acc.partial) : Effect.void)))

const snapshot = (acc: Accumulator): CapturedOutput => ({
  text: Buffer.concat(acc.chunks).toString("utf8"),
  bytes: acc.bytes,
  truncated: acc.bytes > acc.kept,
  lastLine: acc.partial.trim() !== "" ? acc.partial : acc.lastLine
})

/** How long output may keep flowing after the program exited (a background child holding its stdout). */
const drainGraceMs = 2_000

const signalOf = (cause: unknown): string | null => {
  const match = /signal: (\w+)/.exec(String((cause as { message?: string })?.message ?? cause))
  return match?.[1] ?? null
}

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
      const command = Command.make(argv[0]!, ...argv.slice(1)).pipe(
        Command.workingDirectory(spec.cwd),
        Command.env({ ...spec.env, [markerVariable]: token, [ownerVariable]: owner }, { extendEnv: false }),
        // An open stdin with nothing on it makes some programs (the Claude Code CLI) wait for input.
        Command.feed("")
      )
      const child = yield* Command.start(command).pipe(
        Effect.mapError(
          (cause) =>
            new SubprocessError({
              reason: "spawn-failed",
              command: spec.command,
              message: `cannot start ${spec.command}: ${cause.message}`,
              cause
            })
        )
      )
      yield* Effect.addFinalizer(() => terminateTree(child.pid, token, spec.killGraceMs))
      const out = accumulator()
      const err = accumulator()
      const readers = yield* Effect.fork(
        Effect.all(
          [
            captureInto(child.stdout, out, spec.outputLimitBytes, spec.onStdoutLine),
            captureInto(child.stderr, err, spec.outputLimitBytes)
          ],
          { concurrency: "unbounded", discard: true }
        )
      )
      const exitOf = child.exitCode.pipe(
        Effect.map((code) => ({ exitCode: code as number | null, signal: null as string | null })),
        Effect.catchAll((cause) => Effect.succeed({ exitCode: null, signal: signalOf(cause) }))
      )
      type Exited = { exitCode: number | null; signal: string | null }
      const lingered = { exitCode: null, signal: null, done: true } as const
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
      if (timedOut || endedWhenDone) yield* terminateTree(child.pid, token, spec.killGraceMs)
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
        yield* terminateTree(child.pid, token, spec.killGraceMs)
        yield* Fiber.interrupt(readers)
      }
      const result = Option.getOrElse(exit, () => ({ exitCode: null, signal: null }))
      return {
        pid: child.pid,
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

export type { CommandExecutor }
