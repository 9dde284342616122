#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx), so plugins written in TypeScript load the same way.
import { register } from "tsx/esm/api"

register()
await import("../src/main.ts")
