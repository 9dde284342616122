/**
 * A live line per request, stage by stage, for `stageline demo` and `stageline logs --follow`:
 *
 *     3f2a9c1e #1  ✓ claim  ✓ prepare-workspace 4 ms  ✓ customize-skill 4 ms  ▸ execute-mclaude 2.1 s
 *
 * On a terminal the lines of the requests in flight are redrawn in place at the bottom, and anything else
 * printed (an agent's step) goes above them. Elsewhere (a pipe, CI) a request's line is printed again each
 * time one of its stages starts or ends, so the output reads the same, one state after another.
 */
import { Effect, type Scope } from "effect"

/** A step of a request's progress, as the run observer or the events table tell it. */
export interface ProgressEvent {
  readonly requestId: string
  readonly attempt: number
  readonly kind: "claimed" | "stage-started" | "stage-finished"
  readonly stage: string
  readonly outcome?: "ok" | "failed" | "skipped" | undefined
  readonly durationMs?: number | undefined
  /** When it happened (ms since the epoch); now, if not given. */
  readonly at?: number | undefined
}

interface StageState {
  readonly stage: string
  readonly startedAt: number
  outcome: "running" | "ok" | "failed" | "skipped"
  durationMs: number | null
}

export interface RequestProgress {
  readonly requestId: string
  readonly attempt: number
  readonly stages: Array<StageState>
  readonly startedAt: number
  /** When its latest event happened. */
  lastAt: number
  /** Set when the last stage of the pipeline (the one given as `lastStage`) has finished. */
  finished: boolean
}

const marks = { running: "▸", ok: "✓", failed: "✗", skipped: "–" } as const

export const formatDuration = (ms: number) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`)

/** The line of one request at `now`. */
export const line = (p: RequestProgress, now: number): string => {
  const stages = p.stages.map((s) => {
    const took = s.outcome === "running" ? now - s.startedAt : s.durationMs
    const shown = s.stage === "claim" || s.outcome === "skipped" || took === null ? "" : ` ${formatDuration(took)}`
    return `${marks[s.outcome]} ${s.stage}${shown}`
  })
  const tail = p.finished ? `  — done in ${formatDuration(p.lastAt - p.startedAt)}` : ""
  return `${p.requestId.slice(0, 8)} #${p.attempt}  ${stages.join("  ")}${tail}`
}

/** Folds one event into the progress of its request (a new attempt starts a new line). */
export const advance = (
  all: Map<string, RequestProgress>,
  event: ProgressEvent,
  lastStage: string | undefined,
  now: number
): RequestProgress => {
  const at = event.at ?? now
  const key = `${event.requestId}#${event.attempt}`
  let p = all.get(key)
  if (!p) {
    p = { requestId: event.requestId, attempt: event.attempt, stages: [], startedAt: at, lastAt: at, finished: false }
    all.set(key, p)
  }
  p.lastAt = at
  const existing = p.stages.find((s) => s.stage === event.stage)
  if (event.kind === "claimed") {
    if (!existing) p.stages.push({ stage: event.stage, startedAt: at, outcome: "ok", durationMs: null })
  } else if (event.kind === "stage-started") {
    if (!existing) p.stages.push({ stage: event.stage, startedAt: at, outcome: "running", durationMs: null })
  } else {
    const s = existing ?? { stage: event.stage, startedAt: at, outcome: "running" as const, durationMs: null }
    if (!existing) p.stages.push(s)
    s.outcome = event.outcome ?? "ok"
    s.durationMs = event.durationMs ?? null
    if (event.stage === lastStage) p.finished = true
  }
  return p
}

export interface ProgressView {
  readonly onEvent: (event: ProgressEvent) => Effect.Effect<void>
  /** Prints a line that is not progress (an agent's step), keeping the live lines below it. */
  readonly note: (text: string) => Effect.Effect<void>
  /** Makes a request's line final (printed once more, then left alone): it ended without `lastStage`. */
  readonly finish: (requestId: string, attempt: number) => Effect.Effect<void>
  /** The requests (id and attempt) whose lines are still live. */
  readonly active: Effect.Effect<ReadonlyArray<{ readonly requestId: string; readonly attempt: number }>>
  /** On a terminal, redraws every second so a running stage's time moves; elsewhere does nothing. */
  readonly ticking: Effect.Effect<void, never, Scope.Scope>
}

/**
 * A view writing to `out` (stdout by default). `live` (a terminal) redraws in place; otherwise lines are
 * appended. `lastStage` is the pipeline's last stage: when it finishes, the request's line is final.
 */
export const make = (options: {
  readonly lastStage?: string | undefined
  readonly live?: boolean
  readonly write?: (text: string) => void
  readonly now?: () => number
}): ProgressView => {
  const write = options.write ?? ((text: string) => void process.stdout.write(text))
  const now = options.now ?? Date.now
  const live = options.live ?? process.stdout.isTTY === true
  const all = new Map<string, RequestProgress>()
  let drawn = 0
  const active = () => [...all.values()].filter((p) => !p.finished)
  // Cursor up over the lines drawn last time, and clear to the end of the screen.
  const erase = () => (drawn > 0 ? `\x1b[${drawn}F\x1b[J` : "")
  const redraw = (above: ReadonlyArray<string>) => {
    const lines = active().map((p) => line(p, now()))
    write(`${erase()}${above.map((l) => `${l}\n`).join("")}${lines.map((l) => `${l}\n`).join("")}`)
    drawn = lines.length
  }
  const show = (p: RequestProgress) => {
    if (live) redraw(p.finished ? [line(p, now())] : [])
    else write(`${line(p, now())}\n`)
    if (p.finished) all.delete(`${p.requestId}#${p.attempt}`)
  }
  return {
    onEvent: (event) => Effect.sync(() => show(advance(all, event, options.lastStage, now()))),
    finish: (requestId, attempt) =>
      Effect.sync(() => {
        const p = all.get(`${requestId}#${attempt}`)
        if (!p) return
        p.finished = true
        show(p)
      }),
    active: Effect.sync(() => active().map((p) => ({ requestId: p.requestId, attempt: p.attempt }))),
    note: (text) =>
      Effect.sync(() => {
        if (live) redraw([text])
        else write(`${text}\n`)
      }),
    ticking: live
      ? Effect.asVoid(
          Effect.forkScoped(
            Effect.forever(
              Effect.zipRight(
                Effect.sleep("1 second"),
                Effect.sync(() => redraw([]))
              )
            )
          )
        )
      : Effect.void
  }
}
