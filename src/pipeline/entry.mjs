/**
 * What `stageline/pipeline` resolves to (package.json "exports"; its types are ./index.ts): the pipeline
 * module of the engine this process runs, compiled or from the sources (bin/engine.mjs), so that a plugin's
 * Stage and StageRegistry are the engine's own. Outside the CLI (under vitest) the sources are the engine.
 */
import { runningEngine } from "../../bin/engine.mjs"

const engine = runningEngine()
const pipeline = await import(
  engine?.compiled ? new URL("../../dist/src/pipeline/index.js", import.meta.url).href : "./index.ts"
)

// Every value index.ts exports; test/integration/plugins.test.ts checks that none is missing.
export const { AgentSettings, Queue, Recorder, Stage, StageRegistry, WorkerConfig } = pipeline
