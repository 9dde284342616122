#!/usr/bin/env node
// `npm run build` (and `prepare`, so `npm ci` leaves a compiled engine): compiles src/ and stages/ into dist/,
// then dates dist/.built from when it began, so that bin/engine.mjs runs the sources instead while any of
// them is newer. Where there are no sources yet (the image's `npm ci`, before they are copied) it does nothing,
// and it imports nothing of the repository, so that it can run there.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
// bin/engine.mjs reads it.
const buildStamp = path.join(root, "dist", ".built")
if (!fs.existsSync(path.join(root, "src", "main.ts"))) process.exit(0)

const began = new Date()
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
fs.rmSync(buildStamp, { force: true })
execFileSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.build.json")], { stdio: "inherit" })
fs.writeFileSync(buildStamp, "")
fs.utimesSync(buildStamp, began, began)
