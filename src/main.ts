/**
 * The entry point: wires the platform and logging, then hands the arguments to the CLI.
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { cli } from "./cli/Cli.js"
import * as Logging from "./cli/Logging.js"

const MainLive = Layer.mergeAll(NodeContext.layer, Logging.layer)

Effect.suspend(() => cli(process.argv)).pipe(
  Effect.provide(MainLive),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
