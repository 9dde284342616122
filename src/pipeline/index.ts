/**
 * What a plugin imports: `import { Stage, StageRegistry } from "stageline/pipeline"`. The built-in stages
 * in `stages/` use exactly these.
 */
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
