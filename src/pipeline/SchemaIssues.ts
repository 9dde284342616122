/**
 * Schema decode errors as a list of (path, message), worded for people: an optional field that is present
 * but wrong also fails its "undefined" alternative, which adds nothing to the real complaint.
 */
import { ParseResult } from "effect"

export const relevantIssues = (error: ParseResult.ParseError) => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const key = (p: ReadonlyArray<PropertyKey>) => JSON.stringify(p)
  const informative = issues.filter((i) => !i.message.startsWith("Expected undefined")).map((i) => i.path)
  // Said of the field itself or of something inside it.
  const explained = (p: ReadonlyArray<PropertyKey>) =>
    informative.some((q) => q.length >= p.length && key(q.slice(0, p.length)) === key(p))
  return issues.filter((i) => !(i.message.startsWith("Expected undefined") && explained(i.path)))
}

/** `["stages", 2, "with"]` → `stages[2].with`. */
export const pathToField = (p: ReadonlyArray<PropertyKey>) =>
  p.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join("")

/** One line: `config.model: Expected string, actual 7; config.x: is unexpected`. */
export const formatIssues = (error: ParseResult.ParseError, root: string) =>
  relevantIssues(error)
    .map((i) => `${pathToField([root, ...i.path])}: ${i.message}`)
    .join("; ")
