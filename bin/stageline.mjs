#!/usr/bin/env node
// The compiled engine (dist/) when it is current, else the TypeScript sources through tsx: see engine.mjs.
import { start } from "./engine.mjs"

await start()
