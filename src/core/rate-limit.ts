import type { Clock } from '../clock.js';

/**
 * Counts events per key in fixed windows that start at a key's first event.
 * `hit` records one; `blockedFor` says how long a key must still wait (0 = free).
 * Memory is bounded by pruning expired windows as they are touched and in `prune`.
 */
export class WindowCounter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly clock: Clock,
  ) {}

  /** Milliseconds until the key may try again; 0 when it is under the limit. */
  blockedFor(key: string): number {
    const w = this.windows.get(key);
    if (!w) return 0;
    const now = this.clock.now();
    if (now >= w.resetAt) {
      this.windows.delete(key);
      return 0;
    }
    return w.count >= this.limit ? w.resetAt - now : 0;
  }

  hit(key: string): void {
    const now = this.clock.now();
    const w = this.windows.get(key);
    if (!w || now >= w.resetAt) this.windows.set(key, { count: 1, resetAt: now + this.windowMs });
    else w.count++;
  }

  reset(key: string): void {
    this.windows.delete(key);
  }

  prune(): void {
    const now = this.clock.now();
    for (const [k, w] of this.windows) if (now >= w.resetAt) this.windows.delete(k);
  }
}

/**
 * Token bucket for publish rates: `rate` tokens per second, bursts up to
 * `rate`. `take` returns 0 when a token was taken, else the milliseconds to
 * wait before trying again. A rate of 0 means no limit.
 */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly rate: number,
    private readonly clock: Clock,
  ) {
    this.tokens = rate;
    this.at = clock.now();
  }

  take(): number {
    if (this.rate === 0) return 0;
    const now = this.clock.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.at) * this.rate) / 1000);
    this.at = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.rate);
  }
}
