#!/usr/bin/env -S node --max-semi-space-size=4 --max-old-space-size=1024
// The compiled engine (dist/) when it is current, else the TypeScript sources through tsx: see engine.mjs.
//
// The heap flags hold a worker's RSS under 150 MB at WORKER_COUNT 64: with Node's defaults on a machine with
// memory to spare, the young generation grows to 32 MB and the old one may quadruple between collections,
// for a live heap of about 50 MB. They cost some CPU in collections: semi-spaces of 4 MB held the same RSS
// as 2 MB did, for a tenth less CPU a request (8 MB cost 8 MB more). Run as `node bin/stageline.mjs`, Node's
// defaults apply.
import { start } from "./engine.mjs"

await start()
