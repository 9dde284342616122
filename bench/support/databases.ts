/**
 * The benchmark's databases: created on the PostgreSQL at `BENCH_DATABASE_URL` (default
 * postgres://postgres@127.0.0.1:5432/postgres) and dropped when the benchmark ends, however it ends. Only
 * databases this process created are ever dropped.
 */
import pg from "pg"

export const adminUrl = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

const created = new Set<string>()

export const urlOf = (database: string) => {
  const u = new URL(adminUrl)
  u.pathname = `/${database}`
  return u.toString()
}

const admin = async <A>(use: (client: pg.Client) => Promise<A>) => {
  const client = new pg.Client({ connectionString: adminUrl, application_name: "stageline-bench" })
  await client.connect()
  try {
    return await use(client)
  } finally {
    await client.end()
  }
}

/** A new empty database; its URL. */
export const createDatabase = async (purpose: string) => {
  const name = `stageline_bench_${purpose}_${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`
  await admin((c) => c.query(`CREATE DATABASE ${name}`))
  created.add(name)
  return { name, url: urlOf(name) }
}

export const dropDatabase = async (name: string) => {
  if (!created.has(name)) return
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  created.delete(name)
}

export const dropAll = async () => {
  for (const name of [...created]) await dropDatabase(name).catch(() => {})
}

export const connect = async (url: string) => {
  const client = new pg.Client({ connectionString: url, application_name: "stageline-bench" })
  await client.connect()
  return client
}
