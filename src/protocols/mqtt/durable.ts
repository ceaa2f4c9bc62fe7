/**
 * Persistent sessions in a cluster: the publishing node stores.
 *
 * A QoS 1/2 topic message is acknowledged only once it is committed to the
 * stored queue of every persistent session it matches, wherever that
 * session is held. So the node where a message is published, not the node
 * holding the session, writes the rows, and the bus only wakes the holder
 * up (`mqtt.wake`): a message lost on the bus is still in the store, and a
 * holder that missed wake-ups looks at the store again (each lease tick,
 * and after Redis comes back).
 *
 * - Every node follows the persistent sessions of the whole cluster: their
 *   plain topic subscriptions in a TopicIndex, read from the store. Before
 *   each batch it reads the sessions changed since its last read (by the
 *   store's clock, with a margin for transactions that commit late), so a
 *   subscription acknowledged before a publish began is always seen.
 *   Sessions deleted since are dropped at the next full read (their rows
 *   are skipped by the store meanwhile).
 * - Messages are written in batches, one transaction at a time, in the order
 *   they were published on this node: a session's queue keeps each
 *   publisher's order (ids are assigned at insert, one batch after another).
 * - The holder sends a connected client its queue's new rows (replay.ts);
 *   the live copy of such a message is not sent to that client (publish-out.ts).
 *
 * On a single node none of this runs: sessions there collect through their
 * offline consumers and the connection's own writes (sessions.ts).
 */
import type { HeraldContext } from '../../context.js';
import type { ClusterControl } from '../../core/cluster-link.js';
import { inAudience, type CoreMessage } from '../../core/message.js';
import type { Principal } from '../../core/auth.js';
import { TopicIndex } from '../../core/router.js';
import { ownerNode } from '../../store/leases.js';
import { StoreUnavailableError, type MqttQueuedRecord, type MqttSessionRecord, type MqttSubscriptionRecord } from '../../store/store.js';
import { mqttTopicOf, persistedProperties } from './properties.js';
import type { MqttShared } from './shared.js';

/** Sessions changed this long before the last read are read again: a transaction may commit that late. */
const COMMIT_MARGIN_MS = 2000;
/** Every session is read again this often (sessions deleted meanwhile leave the index). */
const FULL_READ_MS = 60_000;
/** Messages stored in one batch, rows and bytes written in one transaction, and messages waiting at most. */
const BATCH_MESSAGES = 512;
const CHUNK_ROWS = 1000;
const CHUNK_BYTES = 8 * 1024 * 1024;
const MAX_WAITING = 20_000;

interface Followed {
  clientId: string;
  holder: string | null;
  principal: Principal;
  subs: DurableSub[];
}

interface DurableSub {
  session: Followed;
  sub: MqttSubscriptionRecord;
}

interface Waiting {
  msg: CoreMessage;
  resolve(): void;
  reject(err: unknown): void;
}

type Row = Omit<MqttQueuedRecord, 'id' | 'packetId' | 'released'>;

export class DurableSessions {
  private readonly index = new TopicIndex<DurableSub>();
  private readonly sessions = new Map<string, Followed>();
  /** The store's clock at the last read; undefined until the first (full) read. */
  private readAt: number | undefined;
  private lastFullRead = 0;
  private waiting: Waiting[] = [];
  private writing = false;

  constructor(
    private readonly ctx: Pick<HeraldContext, 'store' | 'clock' | 'log'>,
    private readonly mqtt: MqttShared,
    private readonly cluster: ClusterControl,
    /** Wakes this node's connected clients whose stored queues got rows. */
    private readonly wakeLocal: (clientIds: readonly string[]) => void,
  ) {}

  /**
   * A topic message published on this node: resolves once it is in the
   * stored queue of every persistent session it matches (at once when it
   * matches none), rejects when the store failed.
   */
  store(msg: CoreMessage): Promise<void> {
    // The store is slower than the publishers: refuse (they repeat later) rather than hold without end.
    if (this.waiting.length >= MAX_WAITING) return Promise.reject(new StoreUnavailableError(`${MAX_WAITING} messages already wait to be stored for persistent sessions`));
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ msg, resolve, reject });
      if (!this.writing) void this.writeAll();
    });
  }

  /** Writes what waits, a batch at a time, until nothing does. */
  private async writeAll(): Promise<void> {
    this.writing = true;
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.splice(0, BATCH_MESSAGES);
        try {
          try {
            await this.follow();
          } catch (err) {
            // The store is away, so no subscription can have been acknowledged since the last read:
            // go on with what is known (a message no persistent session matches is acknowledged).
            if (this.readAt === undefined) throw err;
          }
          const rows: Row[] = [];
          const holders = new Map<string, Set<string>>();
          for (const w of batch) this.rowsFor(w.msg, rows, holders);
          // In bounded transactions, one after another: the order stays, and no statement carries gigabytes.
          for (let i = 0; i < rows.length; ) {
            let bytes = 0;
            let j = i;
            while (j < rows.length && j - i < CHUNK_ROWS && (j === i || bytes + rows[j]!.body.length <= CHUNK_BYTES)) bytes += rows[j++]!.body.length;
            await this.ctx.store.enqueueMqttMany(rows.slice(i, j));
            i = j;
          }
          for (const w of batch) w.resolve();
          this.wake(holders);
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.writing = false;
    }
  }

  /** The rows a message makes: one per matching session, at the highest QoS granted, with every matching subscription id. */
  private rowsFor(msg: CoreMessage, rows: Row[], holders: Map<string, Set<string>>): void {
    if (msg.target.kind !== 'topic' || msg.qos === 0) return;
    const bySession = new Map<Followed, { qos: number; ids: number[] }>();
    this.index.match(msg.target.topic, (d) => {
      const s = d.session;
      if (!inAudience(msg.audience, s.principal)) return;
      // No-local: the publisher is connected here, under this client id.
      if (d.sub.noLocal && msg.publisherSession !== undefined && this.mqtt.clients.get(s.clientId)?.id === msg.publisherSession) return;
      const qos = Math.min(d.sub.qos, msg.qos);
      let e = bySession.get(s);
      if (!e) bySession.set(s, (e = { qos: 0, ids: [] }));
      e.qos = Math.max(e.qos, qos);
      const id = d.sub.subscriptionId;
      if (id !== null && id !== undefined && !e.ids.includes(id)) e.ids.push(id);
    });
    const now = this.ctx.clock.now();
    for (const [s, e] of bySession) {
      if (e.qos === 0) continue; // QoS 0 is not kept
      const ids = e.ids.length === 0 ? undefined : e.ids.length === 1 ? e.ids[0] : e.ids.sort((x, y) => x - y);
      rows.push({ clientId: s.clientId, topic: mqttTopicOf(msg), body: msg.body, qos: e.qos, properties: JSON.stringify(persistedProperties(msg, ids)), createdAt: now });
      if (s.holder === null) continue; // whoever adopts it reads its queue
      let set = holders.get(s.holder);
      if (!set) holders.set(s.holder, (set = new Set()));
      set.add(s.clientId);
    }
  }

  private wake(holders: Map<string, Set<string>>): void {
    for (const [holder, ids] of holders) {
      if (ownerNode(holder) === this.cluster.nodeId) this.wakeLocal([...ids]);
      else this.cluster.send(ownerNode(holder), 'mqtt.wake', [...ids]);
    }
  }

  /** Reads the sessions changed since the last read (all of them at first, and every FULL_READ_MS). */
  async follow(): Promise<void> {
    const full = this.readAt === undefined || Date.now() - this.lastFullRead >= FULL_READ_MS;
    const { sessions, now } = await this.ctx.store.mqttSessionsChangedSince(full ? 0 : this.readAt! - COMMIT_MARGIN_MS);
    if (full) {
      const seen = new Set(sessions.map((s) => s.clientId));
      for (const id of [...this.sessions.keys()]) if (!seen.has(id)) this.forget(id);
      this.lastFullRead = Date.now();
    }
    for (const record of sessions) this.followSession(record);
    this.readAt = now;
  }

  /** Stops following a session (deleted, or about to be read again). */
  private forget(clientId: string): void {
    const s = this.sessions.get(clientId);
    if (!s) return;
    for (const d of s.subs) this.index.remove(d.sub.filter, d);
    this.sessions.delete(clientId);
  }

  private followSession(record: MqttSessionRecord): void {
    this.forget(record.clientId);
    const s: Followed = { clientId: record.clientId, holder: record.node, principal: JSON.parse(record.owner) as Principal, subs: [] };
    for (const sub of record.subscriptions) {
      // Shared subscriptions are served by their connected members; mailboxes travel as user messages.
      if (sub.filter.startsWith('$share/') || sub.filter.startsWith('$user/')) continue;
      const d: DurableSub = { session: s, sub };
      s.subs.push(d);
      this.index.add(sub.filter, d);
    }
    this.sessions.set(record.clientId, s);
  }
}
