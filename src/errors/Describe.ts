/**
 * One line for an error, as a person reads it: its message, then each cause's, down the chain
 * (`connect ECONNREFUSED 127.0.0.1:5432` under a pool's "Failed to acquire connection"). Anything with a
 * `message` counts as an error, so tagged Effect errors read as their message too.
 */
export const describeError = (error: unknown): string => {
  const message =
    error instanceof Error || (typeof error === "object" && error !== null && "message" in error)
      ? String((error as { message: unknown }).message)
      : String(error)
  const cause = (error as { cause?: unknown } | null)?.cause
  return cause === undefined || cause === error ? message : `${message}: ${describeError(cause)}`
}
