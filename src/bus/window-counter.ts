/** A counter shared by every node over a fixed window that starts at the first hit (ClusterControl.windowCounter). */
import type { Redis } from 'ioredis';
import type { WindowCounter } from '../core/cluster-link.js';

/** INCR with the window set on the first hit; keys are `prefix` + key. */
export function redisWindowCounter(redis: Redis, prefix: string, limit: number, windowMs: number): WindowCounter {
  const key = (k: string): string => prefix + k;
  return {
    blockedFor: async (k) => {
      const [count, ttl] = await Promise.all([redis.get(key(k)), redis.pttl(key(k))]);
      return count !== null && Number(count) >= limit && ttl > 0 ? ttl : 0;
    },
    hit: async (k) => {
      await redis.multi().incr(key(k)).pexpire(key(k), windowMs, 'NX').exec();
    },
    reset: async (k) => {
      await redis.del(key(k));
    },
    // Only a window that still exists (a DECR of an expired key would start one at -1, with no end).
    unhit: async (k) => {
      await redis.eval("if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then redis.call('DECR', KEYS[1]) end return 0", 1, key(k));
    },
  };
}
