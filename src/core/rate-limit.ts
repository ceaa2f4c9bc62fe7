import type { Clock } from '../clock.js';

/**
 * Counts events per key in fixed windows that start at a key's first event.
 * `hit` records one; `blockedFor` says how long a key must still wait (0 = free).
 * Memory is bounded: expired windows are pruned as they are touched and in
 * `prune`, and past `maxKeys` live keys the oldest windows go first (an
 * attacker would need `maxKeys` fresh keys within one window to push a
 * blocked one out).
 */
export class WindowCounter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly clock: Clock,
    private readonly maxKeys = 100_000,
  ) {}

  /** Milliseconds until the key may try again; 0 when it is under the limit. */
  blockedFor(key: string): number {
    const w = this.live(key);
    return w && w.count >= this.limit ? w.resetAt - this.clock.now() : 0;
  }

  /** Events of the key in its current window. */
  count(key: string): number {
    return this.live(key)?.count ?? 0;
  }

  private live(key: string): { count: number; resetAt: number } | undefined {
    const w = this.windows.get(key);
    if (!w) return undefined;
    if (this.clock.now() >= w.resetAt) {
      this.windows.delete(key);
      return undefined;
    }
    return w;
  }

  hit(key: string): void {
    const now = this.clock.now();
    const w = this.windows.get(key);
    if (w && now < w.resetAt) {
      w.count++;
      return;
    }
    if (w) this.windows.delete(key);
    if (this.windows.size >= this.maxKeys) {
      this.prune();
      // Windows are inserted in time order: the first ones end soonest.
      for (const k of this.windows.keys()) {
        if (this.windows.size < this.maxKeys) break;
        this.windows.delete(k);
      }
    }
    this.windows.set(key, { count: 1, resetAt: now + this.windowMs });
  }

  reset(key: string): void {
    this.windows.delete(key);
  }

  /** Takes back one hit of the key's current window (an attempt that could not be judged). */
  unhit(key: string): void {
    const w = this.live(key);
    if (w && w.count > 0) w.count--;
  }

  prune(): void {
    const now = this.clock.now();
    for (const [k, w] of this.windows) if (now >= w.resetAt) this.windows.delete(k);
  }

  get size(): number {
    return this.windows.size;
  }
}

/**
 * Like WindowCounter, and also remembers from how many distinct sources
 * (client addresses) a key's events came, up to `maxSources`: a name that
 * fails from many addresses is under a spread-out attack, one that fails
 * from a single address is not.
 */
export class SpreadCounter {
  private readonly windows = new Map<string, { count: number; sources: Set<string>; resetAt: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly clock: Clock,
    private readonly maxKeys = 100_000,
    private readonly maxSources = 16,
  ) {}

  /** Events and distinct sources of the key in its current window. */
  get(key: string): { count: number; sources: number } {
    const w = this.windows.get(key);
    if (!w) return { count: 0, sources: 0 };
    if (this.clock.now() >= w.resetAt) {
      this.windows.delete(key);
      return { count: 0, sources: 0 };
    }
    return { count: w.count, sources: w.sources.size };
  }

  hit(key: string, source: string): void {
    const now = this.clock.now();
    let w = this.windows.get(key);
    if (w && now >= w.resetAt) {
      this.windows.delete(key);
      w = undefined;
    }
    if (!w) {
      if (this.windows.size >= this.maxKeys) {
        this.prune();
        for (const k of this.windows.keys()) {
          if (this.windows.size < this.maxKeys) break;
          this.windows.delete(k);
        }
      }
      w = { count: 0, sources: new Set(), resetAt: now + this.windowMs };
      this.windows.set(key, w);
    }
    w.count++;
    if (w.sources.size < this.maxSources) w.sources.add(source);
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
