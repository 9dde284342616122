/**
 * The entry point: wires the platform, logging and tracing, then hands the arguments to the CLI. A command that
 * fails prints what went wrong in a sentence (and its cause), not a stack trace, and exits 1.
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Layer } from "effect"
import { cli } from "./cli/Cli.js"
import * as Logging from "./cli/Logging.js"
import { describeError } from "./errors/Describe.js"
import * as Tracing from "./tracing/Tracing.js"

const MainLive = Layer.mergeAll(NodeContext.layer, Logging.layer, Tracing.layer)

const reportFailure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause)
        : Effect.zipRight(
            // The CLI has already printed what was wrong with the arguments.
            ValidationError.isValidationError(Cause.squash(cause))
              ? Effect.void
              : Console.error(`stageline: ${describeError(Cause.squash(cause))}`),
            Effect.sync(() => {
              process.exitCode = 1
            })
          )
    )
  )

Effect.suspend(() => cli(process.argv)).pipe(
  reportFailure,
  Effect.provide(MainLive),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
