/**
 * What a request's `repo_url` and `branch` may be. Both come from whoever can insert a row, and both end up
 * on git's command line, so anything that git could read as an option or a remote helper is refused.
 */
import { InvalidRequest } from "../queue/RequestConfig.js"

const urlForms = [/^(https?|ssh|git|file):\/\/[^\s]+$/i, /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$/, /^\/[^\s]*$/]

/** `https://user:secret@host/x` → `https://***@host/x`, for messages. */
export const redactUrl = (url: string) => url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, "$1***@")

export const checkRepoUrl = (url: string): InvalidRequest | null => {
  const shown = redactUrl(url)
  if (url.startsWith("-")) {
    return new InvalidRequest({
      field: "repo_url",
      message: `repo_url "${shown}" starts with "-" and would be read as an option`
    })
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(url)) {
    return new InvalidRequest({
      field: "repo_url",
      message: `repo_url "${shown}" uses a git remote helper ("::"), which is not allowed`
    })
  }
  if (/[\0\n\r]/.test(url)) {
    return new InvalidRequest({ field: "repo_url", message: "repo_url contains control characters" })
  }
  // A password anywhere, or any user name over HTTP(S), where a token passed as the user name is the usual
  // way to embed one (`https://ghp_…@github.com/…`); `ssh://git@host/…` names an account, not a secret.
  if (/^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:[^/@\s]*@/i.test(url) || /^https?:\/\/[^/@\s]+@/i.test(url)) {
    return new InvalidRequest({
      field: "repo_url",
      message: `repo_url "${shown}" carries credentials; remove them and give the worker GH_TOKEN or SSH_PRIVATE_KEY instead`
    })
  }
  if (!urlForms.some((form) => form.test(url))) {
    return new InvalidRequest({
      field: "repo_url",
      message: `repo_url "${shown}" is not a repository URL (https://, ssh://, git://, file://, user@host:path or an absolute path)`
    })
  }
  return null
}

export const checkBranch = (branch: string): InvalidRequest | null => {
  const bad =
    branch === "" ||
    branch.startsWith("-") ||
    branch.startsWith("/") ||
    branch.endsWith("/") ||
    branch.endsWith(".") ||
    branch.endsWith(".lock") ||
    branch.includes("..") ||
    branch.includes("//") ||
    branch.includes("@{") ||
    /[\0-\x20\x7f~^:?*[\\]/.test(branch)
  return bad ? new InvalidRequest({ field: "branch", message: `branch "${branch}" is not a valid branch name` }) : null
}
