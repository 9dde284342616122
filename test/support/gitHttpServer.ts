/**
 * A smart-HTTP git server on 127.0.0.1: `git http-backend` behind node:http, asking for a token as git
 * hosts do (Basic auth, 401 without it). It records the Authorization headers it was sent.
 */
import { spawn } from "node:child_process"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"

export const gitHttpServer = (projectRoot: string, token: string) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; server: http.Server; authorizations: Array<string | undefined> }>((resume) => {
      const authorizations: Array<string | undefined> = []
      const expected = `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`
      const server = http.createServer((req, res) => {
        authorizations.push(req.headers.authorization)
        if (req.headers.authorization !== expected) {
          res.writeHead(401, { "WWW-Authenticate": 'Basic realm="git"' }).end()
          return
        }
        const url = new URL(req.url ?? "/", "http://127.0.0.1")
        const cgi = spawn("git", ["http-backend"], {
          env: {
            PATH: process.env.PATH,
            GIT_PROJECT_ROOT: projectRoot,
            GIT_HTTP_EXPORT_ALL: "1",
            PATH_INFO: url.pathname,
            QUERY_STRING: url.search.slice(1),
            REQUEST_METHOD: req.method ?? "GET",
            CONTENT_TYPE: req.headers["content-type"] ?? "",
            REMOTE_USER: "x-access-token"
          }
        })
        req.pipe(cgi.stdin)
        let head = Buffer.alloc(0)
        let headersSent = false
        cgi.stdout.on("data", (chunk: Buffer) => {
          if (headersSent) return void res.write(chunk)
          head = Buffer.concat([head, chunk])
          const end = head.indexOf("\r\n\r\n")
          if (end === -1) return
          const lines = head.subarray(0, end).toString().split("\r\n")
          let status = 200
          for (const line of lines) {
            const [name, ...rest] = line.split(":")
            const value = rest.join(":").trim()
            if (name!.toLowerCase() === "status") status = Number.parseInt(value, 10)
            else res.setHeader(name!, value)
          }
          res.writeHead(status)
          headersSent = true
          res.write(head.subarray(end + 4))
        })
        cgi.on("close", () => res.end())
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, server, authorizations }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )
