import { describe, expect, it } from "@effect/vitest"
import { runCli } from "../support/cli.js"
import { stagesAfterClaim, tempDir } from "../support/harness.js"
import { freePort } from "../support/ports.js"

describe("stageline demo", () => {
  it("runs one request through every stage with the real CLI and a scripted model, and exits 0", async () => {
    const { code, output } = await runCli(["demo"], {
      // Its own embedded server, so it neither meets nor disturbs another one.
      STAGELINE_DATA_DIR: tempDir("demo-data"),
      STAGELINE_EMBEDDED_PG_PORT: String(await freePort()),
      DATABASE_URL: undefined,
      ANTHROPIC_API_KEY: undefined,
      ANTHROPIC_AUTH_TOKEN: undefined,
      LOG_LEVEL: undefined
    })
    if (code !== 0) console.error(output)
    expect(output).toContain("Model: SCRIPTED")
    expect(output).toContain("SQL> INSERT INTO orchestration_requests (repo_url, prompt)")
    for (const stage of stagesAfterClaim) {
      expect(output).toMatch(new RegExp(`✓ ${stage} [\\d.]+ m?s`))
    }
    // The request's line, ending with every stage done.
    expect(output).toMatch(/ #1 {2}✓ claim {2}✓ prepare-workspace .*✓ record [\d.]+ m?s {2}— done in [\d.]+ m?s\n/)
    expect(output).toMatch(/status\s+success/)
    expect(output).toMatch(/commits\s+\[\{"sha":"[0-9a-f]{40}","subject":"Add security review"\}\]/)
    expect(code).toBe(0)
  }, 120_000)
})
