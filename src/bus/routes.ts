/**
 * Which bus channels this node listens to, from what its clients need:
 * topic filters map to channels and glob patterns (`a/+/c` → `t:a/*​/c`;
 * `a/#` → `t:a` and `t:a/*`), users to `u:{id}`, queues to `q:{name}`;
 * counted, so a channel is subscribed once however many need it. A new
 * subscription's route is ready once Redis has confirmed it.
 */
import type { Bus } from './bus.js';
import { globEscape } from './bus.js';

/** How long a subscription's acknowledgement waits at most for Redis to confirm the route. */
const ROUTE_WAIT_MS = 2000;

/** Channels and patterns a topic filter needs: `a/+/c` → pattern `t:a/*​/c`; `a/#` → `t:a` and `t:a/*`. */
export function filterChannels(filter: string): { exact: string[]; patterns: string[] } {
  if (!filter.includes('+') && !filter.includes('#')) return { exact: ['t:' + filter], patterns: [] };
  const levels = filter.split('/');
  const multi = levels[levels.length - 1] === '#';
  const fixed = multi ? levels.slice(0, -1) : levels;
  if (fixed.length === 0) return { exact: [], patterns: ['t:*'] };
  const wild = fixed.includes('+');
  const base = fixed.map((l) => (l === '+' ? '*' : globEscape(l))).join('/');
  if (!multi) return { exact: [], patterns: ['t:' + base] };
  return wild ? { exact: [], patterns: ['t:' + base, 't:' + base + '/*'] } : { exact: ['t:' + fixed.join('/')], patterns: ['t:' + base + '/*'] };
}

export class BusRoutes {
  private readonly use = new Map<string, number>();
  /** Subscriptions Redis has not confirmed yet, by `use` key. */
  private readonly confirming = new Map<string, Promise<void>>();

  constructor(private readonly bus: Bus) {}

  private ref(channel: string, pattern: boolean, on: boolean): void {
    const key = (pattern ? 'p' : 'c') + channel;
    const n = (this.use.get(key) ?? 0) + (on ? 1 : -1);
    if (n > 0) this.use.set(key, n);
    else this.use.delete(key);
    if (on && n === 1) {
      const confirmed = pattern ? this.bus.psubscribe(channel) : this.bus.subscribe(channel);
      this.confirming.set(key, confirmed);
      void confirmed.then(() => this.confirming.get(key) === confirmed && this.confirming.delete(key));
    }
    if (!on && n === 0) {
      this.confirming.delete(key);
      pattern ? this.bus.punsubscribe(channel) : this.bus.unsubscribe(channel);
    }
  }

  /** The `use` keys of what a topic filter, a user or a queue needs. */
  private channelsOf(kind: 'topic' | 'user' | 'queue', key: string): string[] {
    if (kind !== 'topic') return ['c' + (kind === 'user' ? 'u:' : 'q:') + key];
    const { exact, patterns } = filterChannels(key);
    return [...exact.map((c) => 'c' + c), ...patterns.map((p) => 'p' + p)];
  }

  interest(kind: 'topic' | 'user' | 'queue', key: string, on: boolean): void {
    for (const k of this.channelsOf(kind, key)) this.ref(k.slice(1), k[0] === 'p', on);
  }

  ready(kind: 'topic' | 'user', key: string): Promise<void> {
    const waits = this.channelsOf(kind, key).flatMap((k) => this.confirming.get(k) ?? []);
    // While Redis is away nothing can be confirmed: the subscription is made (and routes) when it is back.
    if (waits.length === 0 || !this.bus.connected) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ROUTE_WAIT_MS);
      void Promise.all(waits).then(() => (clearTimeout(t), resolve()));
    });
  }
}
