/**
 * Small file-system questions the stages ask.
 */
import * as fs from "node:fs/promises"
import { Effect } from "effect"

/** Whether something exists at `file` (following links). */
export const pathExists = (file: string) =>
  Effect.promise(() =>
    fs.stat(file).then(
      () => true,
      () => false
    )
  )
