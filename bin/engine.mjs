/**
 * Which copy of the engine this process runs: the JavaScript that `npm run build` compiles into dist/ when it
 * is there and no source is newer, else the TypeScript sources through tsx (its loader thread and the
 * modules it compiles cost a worker about 100 MB, and the compiling a second at every start). A plugin's `stageline/pipeline` (src/pipeline/entry.mjs) asks here,
 * so that plugin and engine share one copy of the modules: their service tags are compared by identity.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"

const root = path.resolve(import.meta.dirname, "..")

/** Written by scripts/build.mjs, dated when the build began. */
const buildStamp = path.join(root, "dist", ".built")

const newestSource = (dir) => {
  let newest = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(file))
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, fs.statSync(file).mtimeMs)
  }
  return newest
}

/** Whether dist/ holds a build of the current sources (STAGELINE_FROM_SOURCE=1 says to ignore it). */
export const compiledIsCurrent = () => {
  if (process.env.STAGELINE_FROM_SOURCE === "1") return false
  let built
  try {
    built = fs.statSync(buildStamp).mtimeMs
  } catch {
    return false
  }
  return ["src", "stages"].every((dir) => newestSource(path.join(root, dir)) <= built)
}

let running = null

/** The engine this process runs, once `start` has chosen it; `null` before (e.g. under vitest: the sources). */
export const runningEngine = () => running

const choose = () =>
  compiledIsCurrent()
    ? { compiled: true, dir: path.join(root, "dist", "src") }
    : { compiled: false, dir: path.join(root, "src") }

/** Runs the CLI: compiled if current, else from the sources. */
export const start = async () => {
  running = choose()
  if (!running.compiled) {
    const { register } = await import("tsx/esm/api")
    register()
  }
  await import(pathToFileURL(path.join(running.dir, running.compiled ? "main.js" : "main.ts")).href)
}

/**
 * Chooses the engine as `start` does, for a process that runs the worker in itself (the benchmarks), and
 * returns the URL of one of its modules (`"cli/Cli"`). The sources need that process to load TypeScript.
 */
export const embeddedModule = (name) => {
  running ??= choose()
  return pathToFileURL(path.join(running.dir, running.compiled ? `${name}.js` : `${name}.ts`)).href
}
