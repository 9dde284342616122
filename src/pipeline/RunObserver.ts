/**
 * Who wants to hear about a run as it happens: the demo prints each stage, and later the events table and
 * the dashboard listen here too. The default hears nothing.
 */
import { Context, Effect } from "effect"

export type RunEvent =
  | { readonly _tag: "Claimed"; readonly requestId: string; readonly attempt: number; readonly workerId: string }
  | { readonly _tag: "StageStarted"; readonly requestId: string; readonly attempt: number; readonly stage: string }
  | {
      readonly _tag: "StageFinished"
      readonly requestId: string
      readonly attempt: number
      readonly stage: string
      readonly outcome: "ok" | "failed" | "skipped"
      readonly durationMs: number
      readonly reason?: string | undefined
    }
  | {
      /** One line of the agent's own stream (stream-json): its start, a tool call, a message, its result. */
      readonly _tag: "AgentEvent"
      readonly requestId: string
      readonly attempt: number
      readonly stage: string
      readonly summary: string
      readonly data: unknown
    }

export interface Observer {
  readonly onEvent: (event: RunEvent) => Effect.Effect<void>
}

export class RunObserver extends Context.Reference<RunObserver>()("stageline/RunObserver", {
  defaultValue: (): Observer => ({ onEvent: () => Effect.void })
}) {}

export const emit = (event: RunEvent) => Effect.flatMap(RunObserver, (observer) => observer.onEvent(event))
