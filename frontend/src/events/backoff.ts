/**
 * Reconnect delays: exponential backoff with jitter, so that thousands of browsers that lost the same gateway do
 * not all come back in the same millisecond.
 */

export interface BackoffOptions {
  /** Delay before the first retry, in ms. */
  baseMs: number;
  /** Upper bound of any delay, in ms. */
  maxMs: number;
  /** Growth per attempt. */
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000, factor: 2 };

/**
 * Delay before retry number `attempt` (0 for the first): "equal jitter", half of the exponential step is fixed and
 * half is random, so the delay still grows while retries spread out.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const step = Math.min(options.maxMs, options.baseMs * Math.pow(options.factor, Math.max(0, attempt)));
  return Math.round(step / 2 + random() * (step / 2));
}
