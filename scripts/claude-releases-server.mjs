#!/usr/bin/env node
/**
 * Serves an npm-installed Claude Code binary the way Anthropic's release bucket does, so that
 * `cc-mirror quick` (which downloads the native binary and checks it against a sha256 manifest)
 * can build the mclaude variant with no network: point CC_MIRROR_CLAUDE_RELEASES_URL at it.
 *
 *   node scripts/claude-releases-server.mjs <path to claude binary> <version> [port]
 *
 * Prints the base URL on stdout once listening (port 0, the default, picks a free one); serves
 * only 127.0.0.1, and `GET /stable` and `GET /latest` answer the one version it holds.
 */
import { createHash } from "node:crypto"
import { createReadStream, readFileSync, statSync } from "node:fs"
import { createServer } from "node:http"

const [binary, version, port = "0"] = process.argv.slice(2)
if (binary === undefined || version === undefined) {
  console.error("usage: claude-releases-server.mjs <claude binary> <version> [port]")
  process.exit(2)
}
const platform = `linux-${process.arch}`
const checksum = createHash("sha256").update(readFileSync(binary)).digest("hex")
const manifest = JSON.stringify({
  version,
  platforms: { [platform]: { checksum, size: statSync(binary).size } }
})

const server = createServer((request, response) => {
  const path = new URL(request.url ?? "/", "http://localhost").pathname
  if (path === "/stable" || path === "/latest") {
    response.end(version)
  } else if (path === `/${version}/manifest.json`) {
    response.setHeader("content-type", "application/json")
    response.end(manifest)
  } else if (path === `/${version}/${platform}/claude`) {
    response.setHeader("content-length", String(statSync(binary).size))
    createReadStream(binary).pipe(response)
  } else {
    response.statusCode = 404
    response.end(`not served here: ${path}\n`)
  }
})
server.listen(Number(port), "127.0.0.1", () => {
  const address = server.address()
  console.log(`http://127.0.0.1:${typeof address === "object" && address ? address.port : port}`)
})
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)))
