/**
 * Persistent MQTT sessions. While a persistent session's client is away, an
 * offline consumer stands in for each of its subscriptions and writes every
 * QoS 1/2 message it matches to the store; when the client comes back, it
 * gets them, oldest first, before live traffic. Sessions and their queues
 * live in the store, so they survive restarts; a session whose client stays
 * away past its expiry is deleted.
 */
import type { HeraldContext } from '../../context.js';
import type { Principal } from '../../core/auth.js';
import type { Consumer, Delivery } from '../../core/broker.js';
import { logRejection, OutageLog } from '../../core/background.js';
import { TopicIndex } from '../../core/router.js';
import type { CoreMessage } from '../../core/message.js';
import type { MqttSessionRecord, MqttSubscriptionRecord } from '../../store/store.js';
import { mqttTopicOf, persistedProperties, type SubscriptionIds } from './properties.js';

/** Rows remembered as sent, per session (see PersistentSessions.sentRows). */
const SENT_ROWS_PER_SESSION = 10_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

class OfflineConsumer implements Consumer {
  constructor(
    private readonly sessions: PersistentSessions,
    private readonly entry: Entry,
    readonly principal: Principal,
    readonly sub: MqttSubscriptionRecord,
  ) {}
  get sessionId(): string {
    return this.entry.record.clientId;
  }
  hasCapacity(): boolean {
    return true;
  }
  deliver(msg: CoreMessage, delivery: Delivery): void {
    let qos = Math.min(this.sub.qos, msg.qos);
    if (this.sub.noLocal && msg.publisherSession === this.sessionId) qos = 0;
    let ids: SubscriptionIds = this.sub.subscriptionId ?? undefined;
    if (this.entry.overlaps && msg.target.kind === 'topic' && !this.sub.filter.startsWith('$user/')) {
      // One stored copy for all the session's subscriptions that match, as a connected client gets it.
      if (this.entry.keptNow.has(msg.id)) {
        delivery.settle?.('ack');
        return;
      }
      if (this.entry.keptNow.size === 0) queueMicrotask(() => this.entry.keptNow.clear());
      this.entry.keptNow.add(msg.id);
      const all: number[] = [];
      this.entry.overlaps.match(msg.target.topic, (other) => {
        const s = other.sub;
        if (s.noLocal && msg.publisherSession === this.sessionId) return;
        qos = Math.max(qos, Math.min(s.qos, msg.qos));
        if (s.subscriptionId !== null && s.subscriptionId !== undefined && !all.includes(s.subscriptionId)) all.push(s.subscriptionId);
      });
      ids = all.length === 0 ? undefined : all.length === 1 ? all[0] : all.sort((x, y) => x - y);
    }
    if (qos === 0) {
      delivery.settle?.('ack'); // QoS 0 is not kept for absent clients
      return;
    }
    this.sessions.keep(this.sessionId, msg, qos, ids, delivery);
  }
}

interface Entry {
  record: MqttSessionRecord;
  principal: Principal;
  offline: OfflineConsumer[];
  expiry: NodeJS.Timeout | undefined;
  /**
   * Several topic subscriptions, one with a wildcard, so a message may match
   * more than one: their index, to find the matching ones without looking at
   * every subscription (a session may hold a thousand).
   */
  overlaps: TopicIndex<OfflineConsumer> | undefined;
  /** Messages stored this tick for all matching subscriptions at once. */
  keptNow: Set<string>;
}

export class PersistentSessions {
  private readonly sessions = new Map<string, Entry>();
  private readonly writes = new Set<Promise<unknown>>();
  /** Writes to sessions' queues that failed so far, and the last error (a publisher waiting for them is refused). */
  failures = 0;
  private lastFailure: unknown;
  private readonly outage: OutageLog;
  /**
   * Cluster mode: the node where a message is published stores it for every
   * persistent session (durable.ts), so absent sessions need no offline
   * consumers for their topic subscriptions here.
   */
  private readonly publisherStores: boolean;
  /**
   * Stored rows this node has sent to a session's client and not seen
   * deleted, by client id: sent again (after a reconnect, or the store
   * failing to record the packet id or the deletion) they carry DUP.
   */
  private readonly sentRows = new Map<string, Set<string>>();
  /** Detaches in progress, by client id (a takeover from another node waits for them). */
  private readonly detaching = new Map<string, Promise<void>>();

  constructor(private readonly ctx: HeraldContext) {
    this.publisherStores = ctx.cluster !== undefined;
    this.outage = new OutageLog(ctx.log, 'storing messages for persistent MQTT sessions');
  }

  /**
   * Takes the sessions held by no live node (all of them on a single node's
   * start; in a cluster, those of a node that stopped or died): each gets
   * offline consumers here, expired ones go.
   */
  async adopt(liveNodes: readonly string[]): Promise<number> {
    const now = this.ctx.clock.now();
    const records = await this.ctx.store.adoptMqttSessions(this.ctx.broker.owner, liveNodes);
    for (const record of records) {
      if (this.sessions.has(record.clientId)) continue;
      const since = record.disconnectedAt ?? now;
      if (now - since >= record.expirySeconds * 1000) {
        await this.ctx.store.deleteMqttSession(record.clientId);
        continue;
      }
      // A session that was connected when the server stopped is disconnected now.
      if (record.disconnectedAt === null) await this.ctx.store.saveMqttSession({ ...record, disconnectedAt: now });
      const principal = JSON.parse(record.owner) as Principal;
      const entry: Entry = { record: { ...record, disconnectedAt: since }, principal, offline: [], expiry: undefined, overlaps: undefined, keptNow: new Set() };
      this.sessions.set(record.clientId, entry);
      this.goOffline(entry, (record.expirySeconds * 1000) - (now - since));
    }
    return records.length;
  }

  /** A session from the store that another node held (cluster takeover), without taking it yet. */
  async fetch(clientId: string): Promise<{ record: MqttSessionRecord; principal: Principal } | undefined> {
    const record = await this.ctx.store.getMqttSession(clientId);
    return record ? { record, principal: JSON.parse(record.owner) as Principal } : undefined;
  }

  /** Whether this node holds the session. */
  holds(clientId: string): boolean {
    return this.sessions.has(clientId);
  }

  /**
   * Another node takes the session over: once the last detach is on disk,
   * this node stops collecting for it and forgets it (the store keeps it).
   */
  async release(clientId: string): Promise<void> {
    await this.detaching.get(clientId);
    const entry = this.sessions.get(clientId);
    if (entry) this.stopOffline(entry);
    this.sessions.delete(clientId);
    await this.flush();
  }

  /** This incarnation was fenced: every session it held is another node's now; forgets them all (the store keeps them). */
  forgetAll(): string[] {
    const ids = [...this.sessions.keys()];
    for (const entry of this.sessions.values()) this.stopOffline(entry);
    this.sessions.clear();
    return ids;
  }

  get(clientId: string): { record: MqttSessionRecord; principal: Principal } | undefined {
    return this.sessions.get(clientId);
  }

  /** The client is back (or a new persistent session starts): offline consumers step aside. */
  async attach(clientId: string, principal: Principal, expirySeconds: number, subscriptions: MqttSubscriptionRecord[], qos2In: number[]): Promise<void> {
    const entry = this.sessions.get(clientId);
    if (entry) this.stopOffline(entry);
    const record: MqttSessionRecord = {
      clientId,
      owner: JSON.stringify({ userId: principal.userId, name: principal.name, role: principal.role, credential: { kind: 'anonymous' } }),
      expirySeconds,
      disconnectedAt: null,
      subscriptions,
      qos2In,
      node: this.ctx.broker.owner,
    };
    this.sessions.set(clientId, { record, principal, offline: [], expiry: undefined, overlaps: undefined, keptNow: new Set() });
    await this.flush();
    await this.ctx.store.saveMqttSession(record);
  }

  /** Subscriptions changed while connected. */
  async saveSubscriptions(clientId: string, subscriptions: MqttSubscriptionRecord[]): Promise<void> {
    const entry = this.sessions.get(clientId);
    if (!entry) return;
    entry.record = { ...entry.record, subscriptions };
    await this.ctx.store.saveMqttSession(entry.record);
  }

  /** The QoS 2 packet ids received and not yet released, kept for a resumed session. */
  async saveQos2In(clientId: string, ids: number[]): Promise<void> {
    const entry = this.sessions.get(clientId);
    if (!entry) return;
    entry.record = { ...entry.record, qos2In: ids };
    await this.ctx.store.saveMqttSession(entry.record);
  }

  setExpiry(clientId: string, seconds: number): void {
    const entry = this.sessions.get(clientId);
    if (entry) entry.record = { ...entry.record, expirySeconds: seconds };
  }

  /** The client went away: its session waits, collecting QoS 1/2 messages, until it returns or expires. */
  detach(clientId: string, unacknowledged: { msg: CoreMessage; qos: number; subscriptionId: SubscriptionIds | null }[]): Promise<void> {
    const p = this.detachNow(clientId, unacknowledged).finally(() => {
      if (this.detaching.get(clientId) === p) this.detaching.delete(clientId);
    });
    this.detaching.set(clientId, p);
    return p;
  }

  private async detachNow(clientId: string, unacknowledged: { msg: CoreMessage; qos: number; subscriptionId: SubscriptionIds | null }[]): Promise<void> {
    const entry = this.sessions.get(clientId);
    if (!entry) return;
    if (entry.record.expirySeconds === 0) return this.discard(clientId);
    // What was in flight comes first when the client returns.
    for (const u of unacknowledged) this.keep(clientId, u.msg, u.qos, u.subscriptionId, undefined);
    entry.record = { ...entry.record, disconnectedAt: this.ctx.clock.now() };
    this.goOffline(entry, entry.record.expirySeconds * 1000);
    await this.flush();
    // The client may be back already (takeover, quick reconnect): then its record is the live one.
    if (this.sessions.get(clientId) === entry) await this.ctx.store.saveMqttSession(entry.record);
  }

  markSent(clientId: string, rowId: string): void {
    let set = this.sentRows.get(clientId);
    if (!set) this.sentRows.set(clientId, (set = new Set()));
    set.add(rowId);
    // Bounded per session: the oldest are forgotten (they then go again without DUP).
    if (set.size > SENT_ROWS_PER_SESSION) set.delete(set.values().next().value!);
  }

  sentBefore(clientId: string, rowId: string): boolean {
    return this.sentRows.get(clientId)?.has(rowId) ?? false;
  }

  forgetSent(clientId: string, rowId: string): void {
    const set = this.sentRows.get(clientId);
    if (set?.delete(rowId) && set.size === 0) this.sentRows.delete(clientId);
  }

  /** Ends a session and its queue (clean start, or expiry). */
  async discard(clientId: string): Promise<void> {
    this.sentRows.delete(clientId);
    const entry = this.sessions.get(clientId);
    if (entry) this.stopOffline(entry);
    this.sessions.delete(clientId);
    await this.flush();
    await this.ctx.store.deleteMqttSession(clientId);
  }

  private goOffline(entry: Entry, expiresInMs: number): void {
    const topics = entry.record.subscriptions.filter((s) => !s.filter.startsWith('$share/') && !s.filter.startsWith('$user/'));
    entry.overlaps = topics.length > 1 && topics.some((s) => /[+#]/.test(s.filter)) ? new TopicIndex() : undefined;
    for (const sub of entry.record.subscriptions) {
      // An absent member of a shared subscription simply gets no share: the group's other members do.
      if (sub.filter.startsWith('$share/')) continue;
      if (this.publisherStores && !sub.filter.startsWith('$user/')) continue;
      const c = new OfflineConsumer(this, entry, entry.principal, sub);
      entry.offline.push(c);
      if (!sub.filter.startsWith('$user/')) entry.overlaps?.add(sub.filter, c);
      if (sub.filter.startsWith('$user/')) this.ctx.broker.subscribeUser(entry.principal.userId, sub.filter.slice(6), c);
      else this.ctx.broker.subscribeTopic(sub.filter, c);
    }
    // Timers hold at most 2^31-1 ms (24.8 days); longer expiries wait in steps.
    const arm = (ms: number): void => {
      const step = Math.max(0, Math.min(ms, MAX_TIMER_MS));
      entry.expiry = setTimeout(() => {
        if (ms > MAX_TIMER_MS) return arm(ms - MAX_TIMER_MS);
        // The store away: the session stays (and expires at the next start, or the next adoption).
        this.discard(entry.record.clientId).catch(logRejection(this.ctx.log, 'expiring a persistent MQTT session', { clientId: entry.record.clientId }));
      }, step);
      entry.expiry.unref();
    };
    arm(expiresInMs);
  }

  private stopOffline(entry: Entry): void {
    clearTimeout(entry.expiry);
    for (const c of entry.offline) {
      if (c.sub.filter.startsWith('$user/')) this.ctx.broker.unsubscribeUser(entry.principal.userId, c.sub.filter.slice(6), c);
      else this.ctx.broker.unsubscribeTopic(c.sub.filter, c);
    }
    entry.offline = [];
    entry.overlaps = undefined;
  }

  /**
   * Writes a message to a session's queue (with the packet id it is being
   * sent with, if any); the delivery counts as done once it is on disk.
   * Resolves with the row id.
   */
  keep(clientId: string, msg: CoreMessage, qos: number, subscriptionId: SubscriptionIds | null, delivery: Delivery | undefined, packetId: number | null = null): Promise<string> {
    const write = this.ctx.store
      .enqueueMqtt({
        clientId,
        topic: mqttTopicOf(msg),
        body: msg.body,
        qos,
        properties: JSON.stringify(persistedProperties(msg, subscriptionId)),
        createdAt: this.ctx.clock.now(),
        packetId,
        released: false,
      })
      .then((id) => {
        delivery?.settle?.('ack');
        this.outage.ok();
        return id;
      });
    const tracked = write.catch((err: unknown) => {
      this.failures++;
      this.lastFailure = err;
      this.outage.failed(err);
    });
    this.writes.add(tracked);
    void tracked.finally(() => this.writes.delete(tracked));
    return write;
  }

  /** Resolves when every queued write so far is on disk (a publisher's PUBACK waits for it). */
  async flush(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes]);
  }

  /** As flush, then rejects if a write failed since `failures` was read (the publisher gets no acknowledgement). */
  async flushSince(failures: number): Promise<void> {
    await this.flush();
    if (this.failures > failures) throw this.lastFailure;
  }

  stop(): void {
    for (const e of this.sessions.values()) clearTimeout(e.expiry);
  }
}
