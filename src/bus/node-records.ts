/**
 * Records a node keeps in Redis while it lives, for the others to act on if
 * it dies (ClusterControl.nodeRecords; MQTT keeps its clients' wills here).
 *
 * Per name: a hash `{cluster}:{name}:{owner}` per node incarnation (its
 * owner id, see store/leases.ts), whose TTL each heartbeat pushes
 * RECORD_TTL_MS ahead, and a set `{cluster}:{name}-nodes` of the owners that
 * have written some. When an incarnation is fenced (dead, by the store's
 * leases, not by what Redis lacks), one live node wins its hash (RENAME is
 * atomic) and hands the records to `orphaned`. A node that stops cleanly
 * deletes its own (it settled them itself).
 */
import type { Redis } from 'ioredis';
import type { NodeRecords } from '../core/cluster-link.js';
import type { Logger } from '../log.js';

/** A dead node's records wait this long for a live node to take them; refreshed by each heartbeat. */
const RECORD_TTL_MS = 24 * 3600 * 1000;

class RecordSet implements NodeRecords {
  /** This node's records as kept in Redis (written again after a reconnect). */
  readonly values = new Map<string, Buffer>();

  constructor(
    private readonly redis: Redis,
    private readonly keyOf: (owner: string) => string,
    readonly nodesKey: string,
    private readonly owner: () => string,
    readonly orphaned: (node: string, records: Map<string, Buffer>) => Promise<void>,
  ) {}

  /** This incarnation's hash. */
  get key(): string {
    return this.keyOf(this.owner());
  }

  get size(): number {
    return this.values.size;
  }

  get(key: string): Buffer | undefined {
    return this.values.get(key);
  }

  set(key: string, value: Buffer): void {
    this.values.set(key, value);
    void this.redis
      .multi()
      .hset(this.key, key, value)
      .pexpire(this.key, RECORD_TTL_MS)
      .sadd(this.nodesKey, this.owner())
      .exec()
      .catch(() => undefined); // rewritten with the rest after a reconnect
  }

  delete(key: string): void {
    if (!this.values.delete(key)) return;
    void this.redis.hdel(this.key, key).catch(() => undefined);
  }
}

export class NodeRecordSets {
  private readonly sets = new Map<string, RecordSet>();

  constructor(
    private readonly redis: Redis,
    /** `{cluster}:` */
    private readonly k: string,
    /** This node's current owner id (a new one after it was fenced). */
    private readonly owner: () => string,
    private readonly log: Logger,
  ) {}

  open(name: string, orphaned: (node: string, records: Map<string, Buffer>) => Promise<void>): NodeRecords {
    if (this.sets.has(name)) throw new Error(`node records ${name} are opened twice`);
    const set = new RecordSet(this.redis, (owner) => `${this.k}${name}:${owner}`, `${this.k}${name}-nodes`, this.owner, orphaned);
    this.sets.set(name, set);
    return set;
  }

  /** After (re)connecting to Redis: this node's records as they are now. */
  async rewrite(): Promise<void> {
    for (const set of this.sets.values()) {
      const multi = this.redis.multi().del(set.key);
      if (set.values.size > 0) {
        for (const [key, value] of set.values) multi.hset(set.key, key, value);
        multi.pexpire(set.key, RECORD_TTL_MS).sadd(set.nodesKey, this.owner());
      }
      await multi.exec().catch(() => undefined);
    }
  }

  /**
   * Each lease tick: keeps this node's records alive and takes over those of
   * fenced incarnations. `live` is read after the owners with records, so an
   * incarnation that has just started and written its records counts as live.
   */
  async beat(live: () => Promise<ReadonlySet<string>>): Promise<void> {
    for (const [name, set] of this.sets) {
      try {
        if (set.values.size > 0) await this.redis.pexpire(set.key, RECORD_TTL_MS);
        await this.reap(name, set, live);
      } catch (err) {
        this.log.warn({ err, records: name }, 'taking over the records of dead nodes failed; trying again');
      }
    }
  }

  private async reap(name: string, set: RecordSet, liveNow: () => Promise<ReadonlySet<string>>): Promise<void> {
    const owners = (await this.redis.smembers(set.nodesKey)).filter((o) => o !== this.owner());
    if (owners.length === 0) return;
    const live = await liveNow();
    for (const node of owners) {
      if (live.has(node)) continue;
      const mine = `${this.k}${name}-reaping:${node}:${this.owner()}`;
      try {
        await this.redis.rename(`${this.k}${name}:${node}`, mine);
      } catch {
        // Taken by another node, or there were none left.
        await this.redis.srem(set.nodesKey, node);
        continue;
      }
      const records = await this.redis.hgetallBuffer(mine);
      await this.redis.multi().del(mine).srem(set.nodesKey, node).exec();
      await set.orphaned(node, new Map(Object.entries(records)));
    }
  }

  /** The node stops: its records go (it has settled them itself). */
  async leave(): Promise<void> {
    for (const set of this.sets.values()) {
      await Promise.all([this.redis.del(set.key), this.redis.srem(set.nodesKey, this.owner())]);
    }
  }
}
