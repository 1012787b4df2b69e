/**
 * Reconnect delays: exponential backoff with jitter. Pure; the random
 * source can be passed in for tests.
 */

/** How long to wait before each reconnect attempt. */
export interface BackoffOptions {
  /** Delay before the first retry, in ms (default 500). */
  base?: number;
  /** Largest delay, in ms (default 30 000). */
  max?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /**
   * Share of each delay that is random, 0 to 1 (default 0.5): the delay is
   * drawn from [d × (1 − jitter), d], d the exponential delay, so clients
   * that lost the same server do not come back in step.
   */
  jitter?: number;
}

export class Backoff {
  readonly base: number;
  readonly max: number;
  readonly factor: number;
  readonly jitter: number;
  /** Retries since the last success. */
  attempt = 0;

  constructor(options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.base = options.base ?? 500;
    this.max = options.max ?? 30_000;
    this.factor = options.factor ?? 2;
    this.jitter = options.jitter ?? 0.5;
    if (!(this.base >= 0) || !(this.max >= this.base)) throw new RangeError("backoff: need 0 <= base <= max");
    if (!(this.factor >= 1)) throw new RangeError("backoff: factor must be at least 1");
    if (!(this.jitter >= 0 && this.jitter <= 1)) throw new RangeError("backoff: jitter must be within 0 and 1");
  }

  /** The delay before the next attempt, in ms; each call counts one attempt. */
  next(): number {
    const ceiling = Math.min(this.max, this.base * this.factor ** this.attempt);
    this.attempt += 1;
    return Math.round(ceiling * (1 - this.jitter * this.random()));
  }

  /** After a success: the next delay starts from `base` again. */
  reset(): void {
    this.attempt = 0;
  }
}
