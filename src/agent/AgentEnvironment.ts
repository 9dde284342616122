/**
 * The agent's environment, built from scratch: an allow-list of the worker's own variables, then the
 * request's metadata (camelCase keys become SCREAMING_SNAKE_CASE, as in the seed), then the agent identity.
 * A metadata key that would change how programs start, where they look or whom they talk to is refused:
 * metadata comes from whoever can insert a row, and must not be able to take over the agent.
 */
import { InvalidRequest } from "../queue/RequestConfig.js"

/** Worker variables the agent inherits (exact names, or prefixes ending in `*`). */
const inherited = [
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "SHELL",
  "LANG",
  "LANGUAGE",
  "LC_*",
  "TZ",
  "TERM",
  "ANTHROPIC_*",
  "CLAUDE_CODE_*",
  "DISABLE_*",
  "MCP_*",
  "GH_TOKEN",
  "GITHUB_TOKEN",
  "GH_HOST",
  "SSH_AUTH_SOCK",
  "GIT_AUTHOR_NAME",
  "GIT_AUTHOR_EMAIL",
  "GIT_COMMITTER_NAME",
  "GIT_COMMITTER_EMAIL",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "IS_SANDBOX"
]

const matches = (name: string, patterns: ReadonlyArray<string>) =>
  patterns.some((p) => (p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p))

/** Variables metadata may never set (exact names, or prefixes ending in `*`). */
const forbidden = [
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "SHELL",
  "TMPDIR",
  "TMP",
  "TEMP",
  "PWD",
  "IFS",
  "ENV",
  "BASH_ENV",
  "BASH_FUNC_*",
  "PS4",
  "PROMPT_COMMAND",
  "LD_*",
  "DYLD_*",
  "NODE_*",
  "NPM_*",
  "PYTHON*",
  "PERL*",
  "RUBY*",
  "GEM_*",
  "JAVA_TOOL_OPTIONS",
  "GIT_*",
  "SSH_*",
  "GH_*",
  "GITHUB_*",
  "CLAUDE_*",
  "ANTHROPIC_*",
  "STAGELINE_*",
  "DISABLE_*",
  "MCP_*",
  "IS_SANDBOX",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "ALL_PROXY",
  "SSL_*",
  "CURL_*",
  "OPENSSL_*",
  "XDG_*",
  "EDITOR",
  "VISUAL",
  "PAGER"
]

/** `supabaseUrl` → `SUPABASE_URL`, `api-key` → `API_KEY`, `SUPABASE_URL` unchanged. */
export const toEnvName = (key: string): string =>
  key
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .replace(/[^A-Za-z0-9]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .toUpperCase()

const maxValueBytes = 64 * 1024
/**
 * All of the metadata together. Linux refuses to start a program whose arguments and environment pass
 * about 2 MiB (E2BIG), and the prompt may take 128 KiB of that: metadata larger than this would fail the
 * spawn with an error that names no field.
 */
const maxTotalBytes = 256 * 1024

/** The metadata column as environment variables, or the reason it cannot be. */
export const metadataEnv = (metadata: unknown): Record<string, string> | InvalidRequest => {
  if (metadata === null || metadata === undefined) return {}
  if (typeof metadata !== "object" || Array.isArray(metadata)) {
    return new InvalidRequest({ field: "metadata", message: "metadata must be a JSON object of names to values" })
  }
  const env: Record<string, string> = {}
  const origin: Record<string, string> = {}
  for (const [key, value] of Object.entries(metadata)) {
    const name = toEnvName(key)
    if (!/^[A-Z_][A-Z0-9_]*$/.test(name)) {
      return new InvalidRequest({
        field: `metadata.${key}`,
        message: `metadata key "${key}" does not make a valid environment variable name`
      })
    }
    if (matches(name, forbidden)) {
      return new InvalidRequest({
        field: `metadata.${key}`,
        message: `metadata key "${key}" would set ${name}, which requests may not set`
      })
    }
    if (origin[name] !== undefined) {
      return new InvalidRequest({
        field: `metadata.${key}`,
        message: `metadata keys "${origin[name]}" and "${key}" both become ${name}`
      })
    }
    if (value === null) continue
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      return new InvalidRequest({
        field: `metadata.${key}`,
        message: `metadata value of "${key}" must be a string, number or boolean, not ${
          Array.isArray(value) ? "an array" : "an object"
        }`
      })
    }
    const text = String(value)
    if (text.includes("\0")) {
      return new InvalidRequest({ field: `metadata.${key}`, message: `metadata value of "${key}" contains a NUL byte` })
    }
    if (Buffer.byteLength(text) > maxValueBytes) {
      return new InvalidRequest({
        field: `metadata.${key}`,
        message: `metadata value of "${key}" is ${Buffer.byteLength(text)} bytes; the limit is ${maxValueBytes}`
      })
    }
    env[name] = text
    origin[name] = key
  }
  const total = Object.entries(env).reduce((sum, [k, v]) => sum + Buffer.byteLength(k) + Buffer.byteLength(v) + 2, 0)
  if (total > maxTotalBytes) {
    return new InvalidRequest({
      field: "metadata",
      message: `metadata is ${total} bytes in all; the limit is ${maxTotalBytes}`
    })
  }
  return env
}

/** The allow-listed part of the worker's environment. */
export const inheritedEnv = (from: NodeJS.ProcessEnv, also: ReadonlyArray<string> = []): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(from)) {
    if (value !== undefined && (matches(name, inherited) || matches(name, also))) env[name] = value
  }
  return env
}
