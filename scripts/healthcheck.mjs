#!/usr/bin/env node
// The image's HEALTHCHECK: exits 0 when the worker's /healthz (or the path given) answers 2xx.
//   node scripts/healthcheck.mjs [/readyz]
const path = process.argv[2] ?? "/healthz"
const port = process.env.STAGELINE_HTTP_PORT ?? "8080"
try {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(4_000) })
  process.exit(response.ok ? 0 : 1)
} catch {
  process.exit(1)
}
