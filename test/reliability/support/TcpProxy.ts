/**
 * A TCP proxy on 127.0.0.1 that can fail the way networks do without saying so: in `blackhole` mode it keeps
 * every connection open and accepts new ones, but forwards nothing in either direction (no reset, no FIN),
 * as a dead NAT entry or a partitioned network does. A connection that lived through a blackhole stays
 * silent for good (its path is gone); back in `forward` mode, new connections carry bytes again.
 */
import * as net from "node:net"

export type ProxyMode = "forward" | "blackhole"

export interface TcpProxy {
  readonly port: number
  mode: ProxyMode
  /** Connections accepted so far. */
  readonly accepted: () => number
  /** Destroys every connection (a reset), in any mode. */
  readonly resetAll: () => void
  readonly close: () => Promise<void>
}

export const startTcpProxy = (target: { host: string; port: number }): Promise<TcpProxy> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<net.Socket>()
    const links = new Set<{ dead: boolean }>()
    let accepted = 0
    const proxy: { mode: ProxyMode } = { mode: "forward" }
    const server = net.createServer((client) => {
      accepted++
      sockets.add(client)
      const upstream = net.connect(target.port, target.host)
      sockets.add(upstream)
      const link = { dead: proxy.mode === "blackhole" }
      links.add(link)
      const pipe = (from: net.Socket, to: net.Socket) =>
        from.on("data", (chunk) => {
          if (!link.dead) to.write(chunk)
        })
      pipe(client, upstream)
      pipe(upstream, client)
      const end = () => {
        client.destroy()
        upstream.destroy()
        sockets.delete(client)
        sockets.delete(upstream)
        links.delete(link)
      }
      client.on("error", end).on("close", end)
      upstream.on("error", end).on("close", end)
    })
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      resolve({
        port,
        get mode() {
          return proxy.mode
        },
        set mode(m: ProxyMode) {
          proxy.mode = m
          if (m === "blackhole") for (const link of links) link.dead = true
        },
        accepted: () => accepted,
        resetAll: () => {
          for (const s of sockets) s.destroy()
          sockets.clear()
        },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy()
            server.close(() => done())
          })
      })
    })
  })
