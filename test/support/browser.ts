/**
 * Debian's chromium driven by playwright-core, for the dashboard's browser test. Absent chromium, the
 * test skips and says why (CI installs it: see .ci/run).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { type BrowserContext, chromium } from "playwright-core"
import { tempDir } from "./harness.js"

export const chromiumPath = "/usr/bin/chromium"

export const haveChromium = fs.existsSync(chromiumPath)

/** Where screenshots are kept (git-ignored). */
export const artifactsDir = path.join(import.meta.dirname, "..", "artifacts")

/** A headless browser with a fresh profile, offline except for 127.0.0.1. */
export const launch = (): Promise<BrowserContext> =>
  chromium.launchPersistentContext(tempDir("chromium-profile"), {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync"
    ]
  })
