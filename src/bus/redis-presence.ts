/**
 * Presence in cluster mode: each node keeps its sessions in a Redis hash
 * (`{cluster}:sess:{node}`) with the presence TTL, refreshed by the
 * heartbeat, so a node that dies takes its sessions with it within
 * `presenceTtlSeconds`. Live figures of other nodes' sessions, and ending a
 * session on another node, go over the cluster's control channel.
 */
import type { Cluster } from './cluster.js';
import { presenceEntry, type NodeInfo, type Presence, type PresenceEntry } from '../core/presence.js';
import type { Session, SessionRegistry } from '../core/session.js';
import type { Logger } from '../log.js';

/** How long a listing waits for other nodes' live session figures. */
const STATS_WAIT_MS = 500;

/** Live figures of a node's sessions: session id → [subscriptions, unacknowledged]. */
type Figures = Record<string, [number, number]>;

export class RedisPresence implements Presence {
  private readonly key: string;

  constructor(
    private readonly cluster: Cluster,
    private readonly registry: SessionRegistry,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {
    this.key = cluster.k + 'sess:' + cluster.nodeId;
    const redis = cluster.redis;
    registry.observe({
      added: (s) => void redis.hset(this.key, s.id, this.entry(s)).catch(() => undefined),
      removed: (s) => void redis.hdel(this.key, s.id).catch(() => undefined),
    });
    cluster.onReconnect(() => this.rewrite());
    // With the Redis heartbeat, not the store's lease: presence must not lapse while PostgreSQL is away.
    cluster.onRedisBeat(async () => {
      // The key lapsed (Redis restarted, or a beat was missed): write it again.
      if ((await redis.pexpire(this.key, ttlMs)) === 0 && this.registry.size > 0) await this.rewrite();
    });
    cluster.onStop(async () => void (await redis.del(this.key)));
    cluster.on<Record<string, never>, Figures>('stats?', () => this.figures());
    cluster.on<{ session: string; message: string }>('kick', (b) => registry.get(b.session)?.close({ code: 'kicked', message: b.message }));
  }

  private entry(s: Session): string {
    return JSON.stringify(presenceEntry(s, this.cluster.nodeId));
  }

  /** After (re)connecting to Redis: write this node's whole session list again. */
  private async rewrite(): Promise<void> {
    const multi = this.cluster.redis.multi().del(this.key);
    for (const s of this.registry.all()) multi.hset(this.key, s.id, this.entry(s));
    multi.pexpire(this.key, this.ttlMs);
    await multi.exec().catch(() => undefined);
  }

  private figures(): Figures {
    const out: Figures = {};
    for (const session of this.registry.all()) {
      const f = session.stats();
      out[session.id] = [f.subscriptions, f.unacked];
    }
    return out;
  }

  kick(node: string, session: string, message: string): void {
    if (node === this.cluster.nodeId) this.registry.get(session)?.close({ code: 'kicked', message });
    else this.cluster.send(node, 'kick', { session, message });
  }

  nodes(): Promise<NodeInfo[]> {
    return this.cluster.nodes();
  }

  async sessions(opts: { stats?: boolean } = {}): Promise<PresenceEntry[]> {
    const nodeId = this.cluster.nodeId;
    const redis = this.cluster.redis;
    // This node's own sessions: live, with their figures (even before its first heartbeat).
    const out: PresenceEntry[] = [...this.registry.all()].map((s) => ({ ...presenceEntry(s, nodeId), ...s.stats() }));
    try {
      const others = (await this.nodes()).map((n) => n.id).filter((id) => id !== nodeId);
      // Figures are asked for while the lists are read: one bus round trip, not one per node.
      const figures = opts.stats && others.length > 0 ? this.cluster.survey<Figures>('stats?', {}, { waitFor: others, timeoutMs: STATS_WAIT_MS }) : undefined;
      const remote: PresenceEntry[] = [];
      for (const id of others) {
        const all = await redis.hgetall(this.cluster.k + 'sess:' + id);
        for (const v of Object.values(all)) remote.push(JSON.parse(v) as PresenceEntry);
      }
      const live = new Map<string, [number, number]>();
      for (const s of (await figures)?.values() ?? []) for (const [id, f] of Object.entries(s)) live.set(id, f);
      for (const e of remote) {
        const f = live.get(e.sessionId);
        out.push(f ? { ...e, subscriptions: f[0], unacked: f[1] } : e);
      }
    } catch (err) {
      // Redis away: this node's sessions are all it can vouch for (and all a broadcast can reach now).
      this.log.warn({ err: (err as Error).message }, 'presence of other nodes unavailable; listing this node only');
    }
    return out.sort((a, b) => a.connectedAt - b.connectedAt);
  }

  async onlineUsers(): Promise<string[]> {
    return [...new Set((await this.sessions()).map((s) => s.userId))];
  }
}
