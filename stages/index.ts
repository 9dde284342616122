/**
 * The built-in stages, in the order a pipeline usually runs them. They register exactly as a plugin's
 * stages do: one `StageRegistry.stages` layer.
 */
import { builtinOrigin, StageRegistry } from "../src/pipeline/StageRegistry.js"
import claim from "./claim.js"
import customizeSkill from "./customize-skill.js"
import executeMclaude from "./execute-mclaude.js"
import extractGitArtifacts from "./extract-git-artifacts.js"
import prepareWorkspace from "./prepare-workspace.js"
import record from "./record.js"

export const builtinStages = [claim, prepareWorkspace, customizeSkill, executeMclaude, extractGitArtifacts, record]

export const BuiltinStages = StageRegistry.stages(builtinOrigin, builtinStages)
