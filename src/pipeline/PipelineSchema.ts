/**
 * The JSON Schema of the pipeline file, generated from the same Schema the compiler decodes with, so the
 * two cannot disagree. `stageline schema` prints it; the committed `pipeline.schema.json` is what editors
 * read (a test keeps it current).
 */
import { JSONSchema } from "effect"
import { PipelineFile } from "./PipelineFile.js"

export const pipelineJsonSchema = () => {
  return {
    ...JSONSchema.make(PipelineFile),
    title: "stageline pipeline",
    description: "A stageline pipeline file: settings and the stages a request goes through."
  }
}

export const pipelineJsonSchemaText = () => `${JSON.stringify(pipelineJsonSchema(), null, 2)}\n`
