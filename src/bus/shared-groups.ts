/**
 * Shared subscriptions (`$share/{group}/…`) across nodes: which nodes hold
 * members of a group, kept in Redis (`{cluster}:share:{group}\0{filter}`),
 * and the pick of exactly one of them per message (a hash of the message id
 * over the sorted member nodes that are alive).
 */
import type { Redis } from 'ioredis';
import type { CoreMessage } from '../core/message.js';

/** FNV-1a, for spreading shared-subscription messages over nodes. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class SharedGroups {
  /** Nodes that hold members of a shared group, by `group\0filter`, as last read. */
  private readonly members = new Map<string, string[]>();

  constructor(
    private readonly redis: Redis,
    /** `{cluster}:` */
    private readonly k: string,
    private readonly nodeId: string,
    private readonly live: () => ReadonlySet<string>,
    /** Tells the other nodes that a group's members changed (they read them again). */
    private readonly announce: (key: string) => void,
  ) {}

  /** This node has (`on`) or no longer has members of a group. */
  interest(group: string, filter: string, on: boolean): void {
    const key = `${group}\u0000${filter}`;
    const set = this.k + 'share:' + key;
    const done = on ? this.redis.sadd(set, this.nodeId) : this.redis.srem(set, this.nodeId);
    void done.then(
      () => this.announce(key),
      () => undefined, // written again after a reconnect
    );
    if (on) {
      this.members.set(key, [this.nodeId]);
      void this.refresh(key);
    } else {
      this.members.delete(key);
    }
  }

  /** Whether this node hands `msg` to the group. */
  pick(group: string, filter: string, msg: CoreMessage): boolean {
    const live = this.live();
    const nodes = this.members.get(`${group}\u0000${filter}`)?.filter((n) => live.has(n));
    if (!nodes || nodes.length === 0 || !nodes.includes(this.nodeId)) return true; // not known yet: better twice than never
    return nodes[hash(msg.id) % nodes.length] === this.nodeId;
  }

  /** Another node announced a change of a group's members. */
  async changed(key: string): Promise<void> {
    if (this.members.has(key)) await this.refresh(key);
  }

  /** After Redis comes back: this node's memberships are written again. */
  async rewrite(): Promise<void> {
    for (const key of this.members.keys()) await this.redis.sadd(this.k + 'share:' + key, this.nodeId).catch(() => undefined);
  }

  async refreshAll(): Promise<void> {
    for (const key of this.members.keys()) await this.refresh(key);
  }

  private async refresh(key: string): Promise<void> {
    try {
      const members = (await this.redis.smembers(this.k + 'share:' + key)).sort();
      if (this.members.has(key)) this.members.set(key, members);
    } catch {
      // Redis away: keep the last view.
    }
  }
}
