/**
 * What the scripted model does in the demo: reads the code, writes a review, commits it, and reports.
 * Every tool call is carried out by the real Claude Code CLI in the real workspace.
 */
import type { Script } from "../model/ScriptedModel.js"

const review = `# Security review

## Blocking

- **src/db.js:7 — SQL injection.** \`findWidget\` builds its query by concatenating \`name\`, which comes
  straight from the request's query string. Anyone can read or change any table.
  Fix: \`pool.query("SELECT * FROM widgets WHERE name = $1", [name])\`.

## Suggestions

- src/server.js: a missing \`name\` is passed on as \`null\`; answer 400 instead.
`

export const demoScript: Script = () => [
  {
    text: "I'll start by reading the code that talks to the database.",
    tools: [{ name: "Bash", input: { command: "cat src/db.js src/server.js", description: "Read the service's code" } }]
  },
  {
    text: "src/db.js concatenates user input into SQL. I'll write the review and commit it.",
    tools: [
      {
        name: "Bash",
        input: {
          command: `cat > REVIEW.md <<'EOF'\n${review}EOF\ngit add REVIEW.md && git -c user.name="Review Bot" -c user.email=bot@example.invalid commit -q -m "Add security review" && git log --oneline -1`,
          description: "Write REVIEW.md and commit it"
        }
      }
    ]
  },
  {
    text: "Review done: one blocking issue (SQL injection in src/db.js, line 7: use a parameterised query) and one suggestion. The findings are in REVIEW.md, committed on main."
  }
]
