/**
 * The deployment files, checked without a container engine or a cluster: every compose file against the
 * compose-spec JSON schema, every Kubernetes manifest against the API's schemas (kubernetes-models, KEDA's
 * CRDs), every Dockerfile through a linter, and what ties them to the code (the probes' paths, the
 * pipelines the images carry, the KEDA query against the real schema).
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1"
import { Ajv } from "ajv"
import { validate as lintDockerfile } from "dockerfile-utils"
import { Effect } from "effect"
import * as apps from "kubernetes-models/apps/v1"
import * as policy from "kubernetes-models/policy/v1"
import * as core from "kubernetes-models/v1"
import * as YAML from "yaml"
import { RegistryLive } from "../../src/cli/Cli.js"
import { load } from "../../src/pipeline/Compiler.js"
import { TestDatabase } from "../support/TestDatabase.js"

const root = path.join(import.meta.dirname, "..", "..")
const require = createRequire(import.meta.url)
const examples = ["code-review-bot", "supabase-assistant", "custom-stage"]
const composeFiles = [
  "docker-compose.yml",
  ...examples.map((e) => `examples/${e}/docker-compose.yml`),
  "scripts/container-smoke.compose.yml"
]
const dockerfiles = ["Dockerfile", ...examples.map((e) => `examples/${e}/Dockerfile`)]
const read = (file: string) => fs.readFileSync(path.join(root, file), "utf8")
// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, walked freely by the assertions below
type Yaml = any
const yamlOf = (file: string) => YAML.parse(read(file)) as Record<string, Yaml>

describe("compose files", () => {
  const schema = JSON.parse(
    fs.readFileSync(
      path.join(path.dirname(require.resolve("dclint/package.json")), "schemas", "compose.schema.json"),
      "utf8"
    )
  )
  // The spec names its draft by an https address Ajv does not know by that name; it is draft-07, Ajv's own.
  delete schema.$schema
  const check = new Ajv({ allErrors: true, strict: false }).compile(schema)

  it.each(composeFiles)("%s follows the compose specification", (file) => {
    const valid = check(yamlOf(file))
    expect(check.errors ?? [], file).toEqual([])
    expect(valid).toBe(true)
  })

  it("the schema check can fail: a misspelt key and a wrong type are refused", () => {
    const stack = yamlOf("examples/code-review-bot/docker-compose.yml")
    expect(check({ ...stack, services: { ...stack.services, db: { ...stack.services.db, imagee: "x" } } })).toBe(false)
    expect(check({ ...stack, services: { db: { image: "postgres:16", ports: "5432" } } })).toBe(false)
  })

  it.each(examples)("examples/%s: db and worker with healthchecks, volumes, credentials from .env", (example) => {
    const dir = `examples/${example}`
    const { services, volumes } = yamlOf(`${dir}/docker-compose.yml`)
    const [workerName, worker] = Object.entries<Yaml>(services).find(([name]) => name !== "db")!
    expect(Object.keys(services).sort()).toEqual(["db", workerName].sort())
    expect(services.db.healthcheck.test.join(" ")).toContain("pg_isready")
    expect(worker.healthcheck.test).toContain("/readyz")
    expect(worker.depends_on.db.condition).toBe("service_healthy")
    expect(worker.env_file).toBe(".env")
    expect(worker.environment.DATABASE_URL).toMatch(/^postgres:\/\/orchestration:\$\{POSTGRES_PASSWORD\}@db:5432\//)
    expect(worker.volumes).toContain("workspaces:/workspace")
    expect(services.db.volumes).toContain("db-data:/var/lib/postgresql/data")
    expect(Object.keys(volumes)).toEqual(expect.arrayContaining(["db-data", "workspaces"]))
    // What it builds exists, and every variable the stack reads is in the example .env.
    expect(fs.existsSync(path.join(root, dir, worker.build.context, "Dockerfile"))).toBe(true)
    const envExample = read(`${dir}/.env.example`)
    expect(envExample).toMatch(/^POSTGRES_PASSWORD=/m)
    expect(envExample).toMatch(/^ANTHROPIC_AUTH_TOKEN=/m)
    expect(worker.stop_grace_period).toBe("90s")
  })
})

describe("Dockerfiles", () => {
  it.each(dockerfiles)("%s passes the linter", (file) => {
    expect(lintDockerfile(read(file)).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([])
  })

  it("the linter can fail", () => {
    expect(lintDockerfile("FROM node:20\nHEALTHCHECK NONE\nHEALTHCHECK CMD true\nWORKDIR relative\n")).not.toEqual([])
  })

  it("the base image: an init as PID 1, a non-root user, a healthcheck, mclaude checked in the build", () => {
    const text = read("Dockerfile")
    expect(text).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--", "stageline"\]$/m)
    expect(text).toMatch(/^USER stageline$/m)
    expect(text).toMatch(/^HEALTHCHECK /m)
    expect(text).toContain("mclaude --version")
    expect(text).toMatch(/^ARG CLAUDE_RELEASES_URL=$/m)
    // The last USER wins: the image does not run as root.
    expect([...text.matchAll(/^USER (\S+)$/gm)].at(-1)![1]).toBe("stageline")
    for (const file of dockerfiles.slice(1)) {
      const users = [...read(file).matchAll(/^USER (\S+)$/gm)].map((m) => m[1])
      expect(users.at(-1) ?? "stageline", file).toBe("stageline")
    }
  })

  it("the base image runs the engine compiled, built after the sources are copied and before the prune", () => {
    const text = read("Dockerfile")
    const at = (needle: string) => {
      expect(text, needle).toContain(needle)
      return text.indexOf(needle)
    }
    // `npm ci` runs `prepare`, which must find its script (and, there, compiles nothing).
    expect(at("COPY scripts/build.mjs scripts/")).toBeLessThan(at("npm ci --no-audit"))
    expect(at("COPY . .")).toBeLessThan(at("npm run build"))
    expect(at("npm run build")).toBeLessThan(at("npm prune --omit=dev"))
    // The context's own dist/ (maybe stale) stays out; the image builds its own.
    expect(read(".dockerignore").split("\n")).toContain("dist")
  })

  it.effect("every example's pipeline, as its image carries it, loads", () =>
    Effect.forEach(examples, (example) => load(path.join(root, "examples", example, "pipeline.yaml")), {
      discard: true
    }).pipe(Effect.provide(RegistryLive))
  )
})

/** The manifests kustomize would put together, each checked by the model of its kind. */
const models: Record<string, new (data: Yaml) => { validate(): void }> = {
  "v1/Namespace": core.Namespace,
  "v1/ConfigMap": core.ConfigMap,
  "v1/Secret": core.Secret,
  "v1/Service": core.Service,
  "apps/v1/Deployment": apps.Deployment,
  "policy/v1/PodDisruptionBudget": policy.PodDisruptionBudget,
  "keda.sh/v1alpha1/ScaledObject": keda.ScaledObject,
  "keda.sh/v1alpha1/TriggerAuthentication": keda.TriggerAuthentication
}
const kustomization = yamlOf("examples/kubernetes/kustomization.yaml")
const manifests = (kustomization.resources as Array<string>).map((file) => ({
  file,
  doc: yamlOf(`examples/kubernetes/${file}`)
}))
const manifest = (kind: string) => manifests.find((m) => m.doc.kind === kind)!.doc

describe("the Kubernetes example", () => {
  it.each(manifests.map((m) => [m.file, m.doc] as const))("%s is a valid manifest", (_file, doc) => {
    const Model = models[`${doc.apiVersion}/${doc.kind}`]
    expect(Model, `${doc.apiVersion}/${doc.kind}`).toBeDefined()
    expect(() => new Model!(doc).validate()).not.toThrow()
  })

  it("the validation can fail: a probe without a port and a trigger without a type are refused", () => {
    const deployment = structuredClone(manifest("Deployment"))
    deployment.spec.template.spec.containers[0].readinessProbe.httpGet = { path: "/readyz" }
    expect(() => new apps.Deployment(deployment).validate()).toThrow()
    const scaled = structuredClone(manifest("ScaledObject"))
    delete scaled.spec.triggers[0].type
    expect(() => new keda.ScaledObject(scaled as keda.IScaledObject).validate()).toThrow()
  })

  it("the worker: probes on the health endpoint, limits, the Secret, a workspace volume, a grace beyond the drain", () => {
    const pod = manifest("Deployment").spec.template.spec
    const worker = pod.containers[0]
    expect(worker.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "http" })
    expect(worker.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "http" })
    expect(worker.ports).toEqual([{ name: "http", containerPort: 8080 }])
    expect(worker.resources.limits).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) })
    expect(worker.envFrom).toContainEqual({ secretRef: { name: manifest("Secret").metadata.name } })
    expect(worker.volumeMounts).toContainEqual({ name: "workspaces", mountPath: "/workspace" })
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    const grace = Number(manifest("ConfigMap").data.STAGELINE_SHUTDOWN_GRACE_MS) / 1000
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(grace)
    const scaled = manifest("ScaledObject")
    expect(scaled.spec.scaleTargetRef.name).toBe(manifest("Deployment").metadata.name)
    expect(scaled.spec.triggers[0].type).toBe("postgresql")
    expect(scaled.spec.triggers[0].authenticationRef.name).toBe(manifest("TriggerAuthentication").metadata.name)
    expect(Number(scaled.spec.triggers[0].metadata.targetQueryValue)).toBe(
      Number(manifest("ConfigMap").data.WORKER_COUNT)
    )
  })
})

layer(TestDatabase, { excludeTestServices: true, timeout: "30 seconds" })("KEDA's query", (it) => {
  it.effect("counts what is ready to run and what runs, not what waits or has ended", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM orchestration_results`
      yield* sql`DELETE FROM orchestration_requests`
      yield* sql`INSERT INTO orchestration_requests (prompt, status, run_after) VALUES
        ('ready', 'pending', now()), ('ready', 'pending', now() - interval '1 minute'),
        ('later', 'pending', now() + interval '1 hour'), ('running', 'processing', now()),
        ('done', 'completed', now()), ('failed', 'failed', now()), ('cancelled', 'cancelled', now())`
      const query = manifest("ScaledObject").spec.triggers[0].metadata.query as string
      const [row] = yield* sql.unsafe<{ count: string }>(query)
      expect(Number(row!.count)).toBe(3)
    })
  )
})
