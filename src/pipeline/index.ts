/**
 * What a plugin imports: `import { Stage, StageRegistry } from "stageline/pipeline"`. The built-in stages
 * in `stages/` use exactly these.
 */

// The services every stage may use, for plugins that want them (see Stage.StageServices).
export { AgentSettings } from "../agent/AgentSettings.js"
export { WorkerConfig } from "../config/WorkerConfig.js"
export { Queue } from "../queue/Queue.js"
export { Recorder } from "../queue/Recorder.js"
export type { ClaimedRequest } from "../queue/Request.js"
export type {
  AgentOutcome,
  ContextKey,
  GitArtifacts,
  GitCommit,
  ResultStatus,
  RunContext,
  RunInfo,
  SkillInstall,
  StageFailure,
  StageInput,
  StageOutput,
  StageReport,
  Workspace
} from "./RunContext.js"
export * as Stage from "./Stage.js"
export { StageRegistry } from "./StageRegistry.js"
