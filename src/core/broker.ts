/**
 * The broker: where every protocol's publishes meet every protocol's
 * subscriptions. Three kinds of destination (see SPEC.md):
 *
 * - topic: fan-out to current subscribers, fire-and-forget.
 * - queue: point to point; each message is stored until one consumer
 *   acknowledges it; consumers compete, round-robin, within their windows.
 * - user mailbox: `(user, name)`; every subscribed session of that user gets
 *   a copy. A message left unacknowledged by a session that goes away is
 *   parked and handed to the user's next subscriber of that name.
 *
 * Server-side destinations (`/app/…`, `/test`) are handlers registered by
 * prefix; the protocol adapter routes to them.
 */
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { Principal } from './auth.js';
import { createMessage, inAudience, type CoreMessage, type HeaderList } from './message.js';
import { TopicIndex } from './router.js';

export type Outcome = 'ack' | 'nack' | 'requeue';

export interface Delivery {
  redelivered: boolean;
  /**
   * Present when the broker must learn what became of the message:
   * `ack` (consumed), `nack` (refused: give it to someone again),
   * `requeue` (the consumer went away before acknowledging).
   */
  settle: ((outcome: Outcome) => void) | undefined;
}

/** One subscription of one session, as the broker sees it. Adapters implement it. */
export interface Consumer {
  readonly sessionId: string;
  readonly principal: Principal;
  /** Writes the message (or holds it if the client's window is full). */
  deliver(msg: CoreMessage, delivery: Delivery): void;
  /** Whether the consumer can take one more queue message now. */
  hasCapacity(): boolean;
}

export interface AppRequest {
  sessionId: string;
  principal: Principal;
  /** Full destination as sent, e.g. `/app/chat.42` or `/test`. */
  destination: string;
  body: Buffer;
  contentType: string | undefined;
  headers: HeaderList;
}

/** Business-rule refusal from an app handler: reported to the sender, connection stays up. */
export class AppRefusal extends Error {
  override name = 'AppRefusal';
}

/** The sender may not use this destination at all (not a member): a protocol error, the connection ends. */
export class AppForbidden extends Error {
  override name = 'AppForbidden';
}

/** Decides who may subscribe to a topic and what a recovering subscriber missed (chat threads). */
export interface TopicAuthority {
  /** A refusal in words, or undefined to allow. */
  authorize(principal: Principal, filter: string): Promise<string | undefined>;
  /** Messages after `since` (a history position or a time) for `topic`, oldest first; undefined if the topic keeps no history. */
  backlog(principal: Principal, topic: string, since: string): Promise<CoreMessage[] | undefined>;
  /**
   * Why no client may publish straight to `topic` (the authority writes it
   * itself, such as a chat thread), or undefined when clients may. Answers
   * synchronously when it can (the publish path is hot).
   */
  publishRefusal(topic: string): string | undefined | Promise<string | undefined>;
}

export type AppHandler = (req: AppRequest) => void | Promise<void>;

/**
 * A mailbox whose messages live in the store (the message service's
 * `messages`): what a new subscriber must get first, and what an
 * acknowledgement means.
 */
export interface DurableMailbox {
  /** The user's stored messages still owed, oldest first (each with `recordId`). */
  pending(userId: string): Promise<CoreMessage[]>;
  /** A session of the user acknowledged the message. */
  acked(userId: string, msg: CoreMessage): void;
}

/**
 * How the broker reaches other nodes (cluster mode); absent on a single node.
 * The broker says what its local subscribers need and forwards what is
 * published here; the link delivers what other nodes publish back through
 * `Broker.receiveRemote` and `Broker.queuePoked`.
 */
export interface ClusterLink {
  readonly nodeId: string;
  /**
   * Whether the other nodes can see this one. While they cannot, it takes no
   * queue messages: after the presence TTL they would count it dead and hand
   * its claims to someone else.
   */
  readonly connected: boolean;
  /** This node starts (`on`) or stops needing a topic filter's or a user's messages, or a queue's pokes. */
  interest(kind: 'topic' | 'user' | 'queue', key: string, on: boolean): void;
  /** Sends a topic or user message published on this node to the nodes that need it. */
  forward(msg: CoreMessage): void;
  /** Tells other nodes' consumers of a queue that unclaimed messages wait in the store. */
  pokeQueue(name: string): void;
  /** This node has (`on`) or no longer has members of a shared subscription group. */
  sharedInterest(group: string, filter: string, on: boolean): void;
  /** Whether this node is the one that hands `msg` to the group (exactly one node per message). */
  sharedPick(group: string, filter: string, msg: CoreMessage): boolean;
}

interface QueuedEntry {
  storeId: string;
  msg: CoreMessage;
  redelivered: boolean;
}

interface QueueState {
  name: string;
  consumers: Consumer[];
  next: number;
  /** Messages this node has claimed in the store and not yet handed out. */
  ready: QueuedEntry[];
  /** Unclaimed messages may wait in the store (after start, a poke, a release, or past the memory cap). */
  mayHaveMore: boolean;
  claiming: boolean;
  pokedWhileClaiming: boolean;
  inflight: number;
}

interface Parked {
  msg: CoreMessage;
  attempts: number;
}

export interface BrokerLimits {
  /** Queue messages held in memory per queue; more stay in the store until needed. */
  queueMemoryMessages: number;
  /** Unacknowledged user-mailbox messages parked per user while no session is subscribed. */
  parkedPerUser: number;
  /** Deliveries of one user-mailbox message before it is dropped as poison. */
  maxRedeliveries: number;
}

const BACKLOG_BATCH = 500;

/**
 * A shared subscription group (`$share/{group}/{filter}`): the topic index
 * sees one consumer; each message goes to one member, round-robin among
 * those with room (and allowed to see it).
 */
class SharedGroup implements Consumer {
  readonly members: Consumer[] = [];
  private next = 0;
  constructor(
    readonly sessionId: string,
    readonly group: string,
    readonly filter: string,
  ) {}
  get principal(): Principal {
    return this.members[0]!.principal;
  }
  hasCapacity(): boolean {
    return this.members.some((m) => m.hasCapacity());
  }
  deliver(msg: CoreMessage, delivery: Delivery): void {
    const n = this.members.length;
    let fallback: Consumer | undefined;
    for (let i = 0; i < n; i++) {
      const m = this.members[(this.next + i) % n]!;
      if (!inAudience(msg.audience, m.principal)) continue;
      fallback ??= m;
      if (m.hasCapacity()) {
        this.next = (this.next + i + 1) % n;
        m.deliver(msg, delivery);
        return;
      }
    }
    if (fallback) fallback.deliver(msg, delivery); // everyone is busy: the first eligible member holds it
    else delivery.settle?.('ack');
  }
}

export class Broker {
  private readonly topics = new TopicIndex<Consumer>();
  /** Shared groups apart from plain subscribers: in a cluster, one node per message serves a group. */
  private readonly sharedIndex = new TopicIndex<SharedGroup>();
  /** Local subscriptions per topic filter (plain and shared), to tell the cluster link what this node needs. */
  private readonly filterUse = new Map<string, number>();
  /** Local consumers per user (all mailbox names), likewise. */
  private readonly userUse = new Map<string, number>();
  private link: ClusterLink | undefined;
  /** Claims being handed back to the store; awaited before the store closes. */
  private readonly releases = new Set<Promise<unknown>>();
  private readonly users = new Map<string, Map<string, Set<Consumer>>>();
  private readonly parked = new Map<string, Map<string, Parked[]>>();
  private readonly queues = new Map<string, QueueState>();
  private readonly queuesOf = new Map<Consumer, Set<QueueState>>();
  private readonly apps: [prefix: string, handler: AppHandler][] = [];
  private readonly durable = new Map<string, DurableMailbox>();
  private authority: TopicAuthority | undefined;
  private readonly shared = new Map<string, SharedGroup>();
  /** Subscribers still being sent their stored backlog; live messages wait here meanwhile. */
  private readonly replaying = new Map<Consumer, CoreMessage[]>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly limits: BrokerLimits,
    /** This node's id: who claims queue messages and holds MQTT sessions. */
    private readonly localId = 'local',
  ) {}

  /** Joins a cluster: from now on, publishes reach other nodes and theirs reach this one. */
  setClusterLink(link: ClusterLink): void {
    this.link = link;
  }

  get nodeId(): string {
    return this.link?.nodeId ?? this.localId;
  }

  private useFilter(filter: string, delta: 1 | -1): void {
    const n = (this.filterUse.get(filter) ?? 0) + delta;
    if (n <= 0) this.filterUse.delete(filter);
    else this.filterUse.set(filter, n);
    if (n === 1 && delta === 1) this.link?.interest('topic', filter, true);
    if (n <= 0) this.link?.interest('topic', filter, false);
  }

  private useUser(userId: string, delta: 1 | -1): void {
    const n = (this.userUse.get(userId) ?? 0) + delta;
    if (n <= 0) this.userUse.delete(userId);
    else this.userUse.set(userId, n);
    if (n === 1 && delta === 1) this.link?.interest('user', userId, true);
    if (n <= 0) this.link?.interest('user', userId, false);
  }

  /** A topic or user message published on another node. */
  receiveRemote(msg: CoreMessage): void {
    if (msg.target.kind === 'topic') this.deliverTopic(msg);
    else if (msg.target.kind === 'user') this.deliverUserLocal(msg);
  }

  // ---- topics ----------------------------------------------------------------

  setTopicAuthority(authority: TopicAuthority): void {
    this.authority = authority;
  }

  /**
   * Why no client may publish to `topic` directly, whatever its rights:
   * `$` topics belong to the server, and topics an authority writes itself
   * (chat threads) take messages only through that authority. Every
   * protocol's publish and the HTTP publish ask this before the ACL.
   * Synchronous unless the authority must look the topic up.
   */
  publishRefusal(topic: string): string | undefined | Promise<string | undefined> {
    if (topic.startsWith('$')) return `topics starting with "$" (${topic.slice(0, 100)}) are written by the server only`;
    return this.authority?.publishRefusal(topic);
  }

  /** Why `principal` may not subscribe to `filter`, or undefined when it may. */
  async authorizeTopic(principal: Principal, filter: string): Promise<string | undefined> {
    return this.authority?.authorize(principal, filter);
  }

  /**
   * Subscribes; with `since`, the subscriber first gets what the topic's
   * history holds after that point, then live messages, with no gap and no
   * message twice (live ones wait while the history is read).
   */
  subscribeTopic(filter: string, consumer: Consumer, since?: { principal: Principal; position: string }): void {
    this.topics.add(filter, consumer);
    this.useFilter(filter, 1);
    if (since && this.authority) {
      this.replaying.set(consumer, []);
      this.authority.backlog(since.principal, filter, since.position).then(
        (backlog) => this.finishTopicReplay(consumer, backlog ?? []),
        (err: unknown) => {
          this.log.error({ err, filter }, 'could not read topic history for recovery');
          this.finishTopicReplay(consumer, []);
        },
      );
    }
  }

  private finishTopicReplay(consumer: Consumer, backlog: CoreMessage[]): void {
    const live = this.replaying.get(consumer);
    this.replaying.delete(consumer);
    if (!live) return; // unsubscribed meanwhile
    const seen = new Set<string>();
    for (const m of backlog) {
      if (m.recordId) seen.add(m.recordId);
      this.safeDeliver(consumer, m, NO_SETTLE);
    }
    for (const m of live) if (!m.recordId || !seen.has(m.recordId)) this.safeDeliver(consumer, m, NO_SETTLE);
  }

  /** Joins `consumer` to the shared subscription `$share/{group}/{filter}`. */
  subscribeShared(group: string, filter: string, consumer: Consumer): void {
    const key = `${group}\u0000${filter}`;
    let g = this.shared.get(key);
    if (!g) {
      g = new SharedGroup(`share:${group}`, group, filter);
      this.shared.set(key, g);
      this.sharedIndex.add(filter, g);
      this.useFilter(filter, 1);
      this.link?.sharedInterest(group, filter, true);
    }
    g.members.push(consumer);
  }

  unsubscribeShared(group: string, filter: string, consumer: Consumer): void {
    const key = `${group}\u0000${filter}`;
    const g = this.shared.get(key);
    if (!g) return;
    const i = g.members.indexOf(consumer);
    if (i >= 0) g.members.splice(i, 1);
    if (g.members.length === 0) {
      this.shared.delete(key);
      this.sharedIndex.remove(filter, g);
      this.useFilter(filter, -1);
      this.link?.sharedInterest(group, filter, false);
    }
  }

  unsubscribeTopic(filter: string, consumer: Consumer): void {
    if (this.topics.remove(filter, consumer)) this.useFilter(filter, -1);
    this.replaying.delete(consumer);
  }

  /**
   * Fan-out to current subscribers, here and (in a cluster) on other nodes;
   * returns the number of deliveries on this node. `local` keeps it on this
   * node (per-node statistics such as `$SYS`).
   */
  publishTopic(msg: CoreMessage, local = false): number {
    if (!local) this.link?.forward(msg);
    return this.deliverTopic(msg);
  }

  private deliverTopic(msg: CoreMessage): number {
    let n = 0;
    const audience = msg.audience;
    const topic = (msg.target as { topic: string }).topic;
    const replaying = this.replaying.size > 0 ? this.replaying : undefined; // almost always empty: skip the lookup
    this.topics.match(topic, (c) => {
      if (audience !== undefined && !inAudience(audience, c.principal)) return;
      n++;
      const waiting = replaying?.get(c);
      if (waiting) waiting.push(msg);
      else this.safeDeliver(c, msg, NO_SETTLE);
    });
    if (this.shared.size > 0) {
      this.sharedIndex.match(topic, (g) => {
        if (this.link && !this.link.sharedPick(g.group, g.filter, msg)) return;
        n++;
        this.safeDeliver(g, msg, NO_SETTLE);
      });
    }
    return n;
  }

  // ---- user mailboxes --------------------------------------------------------

  /** Makes mailbox `name` durable: its stored backlog is replayed to each new subscriber before live traffic. */
  registerDurableMailbox(name: string, mailbox: DurableMailbox): void {
    this.durable.set(name, mailbox);
  }

  subscribeUser(userId: string, name: string, consumer: Consumer): void {
    let byName = this.users.get(userId);
    if (!byName) this.users.set(userId, (byName = new Map()));
    let set = byName.get(name);
    if (!set) byName.set(name, (set = new Set()));
    if (!set.has(consumer)) this.useUser(userId, 1);
    set.add(consumer);
    const durable = this.durable.get(name);
    if (durable) {
      this.replaying.set(consumer, []);
      durable.pending(userId).then(
        (backlog) => this.finishReplay(userId, name, consumer, backlog),
        (err: unknown) => {
          this.log.error({ err, userId, name }, 'could not read the stored backlog of a mailbox');
          this.finishReplay(userId, name, consumer, []);
        },
      );
      return;
    }
    const parked = this.parked.get(userId)?.get(name);
    if (parked) {
      this.parked.get(userId)!.delete(name);
      if (this.parked.get(userId)!.size === 0) this.parked.delete(userId);
      for (const p of parked) this.deliverUser(userId, name, consumer, p.msg, p.attempts, true);
    }
  }

  /** Backlog first, then what arrived live meanwhile, each record once. */
  private finishReplay(userId: string, name: string, consumer: Consumer, backlog: CoreMessage[]): void {
    const live = this.replaying.get(consumer);
    this.replaying.delete(consumer);
    if (!live || !this.users.get(userId)?.get(name)?.has(consumer)) return; // unsubscribed meanwhile
    const seen = new Set<string>();
    for (const m of backlog) {
      if (m.recordId) seen.add(m.recordId);
      this.deliverUser(userId, name, consumer, m, 1, false);
    }
    for (const m of live) if (!m.recordId || !seen.has(m.recordId)) this.deliverUser(userId, name, consumer, m, 1, false);
  }

  unsubscribeUser(userId: string, name: string, consumer: Consumer): void {
    const byName = this.users.get(userId);
    const set = byName?.get(name);
    this.replaying.delete(consumer);
    if (!set?.delete(consumer)) return;
    this.useUser(userId, -1);
    if (set.size === 0) byName!.delete(name);
    if (byName!.size === 0) this.users.delete(userId);
  }

  /** Delivers to every subscribed session of the user, on every node; returns the number of deliveries on this node. */
  publishUser(msg: CoreMessage): number {
    this.link?.forward(msg);
    return this.deliverUserLocal(msg);
  }

  private deliverUserLocal(msg: CoreMessage): number {
    const t = msg.target as { userId: string; name: string };
    const set = this.users.get(t.userId)?.get(t.name);
    if (!set) return 0;
    for (const c of set) {
      const waiting = this.replaying.get(c);
      if (waiting) waiting.push(msg);
      else this.deliverUser(t.userId, t.name, c, msg, 1, false);
    }
    return set.size;
  }

  /** One consumer's failure must not stop the fan-out to the others, nor reach the publisher. */
  private safeDeliver(consumer: Consumer, msg: CoreMessage, delivery: Delivery): void {
    try {
      consumer.deliver(msg, delivery);
    } catch (err) {
      this.log.error({ err, session: consumer.sessionId, messageId: msg.id }, 'delivery to a consumer failed');
    }
  }

  private deliverUser(userId: string, name: string, consumer: Consumer, msg: CoreMessage, attempt: number, redelivered: boolean): void {
    this.safeDeliver(consumer, msg, {
      redelivered,
      settle: (outcome) => {
        if (outcome === 'ack') {
          if (msg.recordId !== undefined) this.durable.get(name)?.acked(userId, msg);
          return;
        }
        // A stored message left unacknowledged stays owed in the store; the next subscriber gets it.
        if (outcome === 'requeue' && msg.recordId !== undefined && this.durable.has(name)) return;
        if (attempt >= this.limits.maxRedeliveries) {
          this.log.warn({ userId, name, messageId: msg.id, attempt }, 'user message dropped after too many redeliveries');
          return;
        }
        const stillThere = this.users.get(userId)?.get(name);
        if (outcome === 'nack' && stillThere?.has(consumer)) {
          this.deliverUser(userId, name, consumer, msg, attempt + 1, true);
        } else if (!stillThere || stillThere.size === 0) {
          this.park(userId, name, msg, attempt + 1);
        }
        // requeue while another session of the user is subscribed: that session has its own copy.
      },
    });
  }

  private park(userId: string, name: string, msg: CoreMessage, attempts: number): void {
    let byName = this.parked.get(userId);
    if (!byName) this.parked.set(userId, (byName = new Map()));
    let list = byName.get(name);
    if (!list) byName.set(name, (list = []));
    list.push({ msg, attempts });
    let total = 0;
    for (const l of byName.values()) total += l.length;
    if (total > this.limits.parkedPerUser) {
      list.shift();
      this.log.warn({ userId, name }, 'parked user messages over the limit; oldest dropped');
    }
  }

  // ---- queues ----------------------------------------------------------------

  private queue(name: string): QueueState {
    let q = this.queues.get(name);
    if (!q) {
      q = { name, consumers: [], next: 0, ready: [], mayHaveMore: true, claiming: false, pokedWhileClaiming: false, inflight: 0 };
      this.queues.set(name, q);
    }
    return q;
  }

  subscribeQueue(name: string, consumer: Consumer): void {
    const q = this.queue(name);
    if (q.consumers.length === 0) {
      this.link?.interest('queue', name, true);
      q.mayHaveMore = true;
    }
    q.consumers.push(consumer);
    let set = this.queuesOf.get(consumer);
    if (!set) this.queuesOf.set(consumer, (set = new Set()));
    set.add(q);
    this.dispatch(q);
  }

  unsubscribeQueue(name: string, consumer: Consumer): void {
    const q = this.queues.get(name);
    if (!q) return;
    const i = q.consumers.indexOf(consumer);
    if (i >= 0) q.consumers.splice(i, 1);
    this.queuesOf.get(consumer)?.delete(q);
    if (this.queuesOf.get(consumer)?.size === 0) this.queuesOf.delete(consumer);
    if (i >= 0 && q.consumers.length === 0) {
      this.link?.interest('queue', name, false);
      // Nobody here wants them now: hand what this node claimed back, for consumers elsewhere.
      this.release(q, q.ready);
      q.ready = [];
      if (q.inflight === 0) this.queues.delete(name);
    }
  }

  /** A consumer's window opened again: give it what waits on its queues. */
  consumerReady(consumer: Consumer): void {
    const qs = this.queuesOf.get(consumer);
    if (qs) for (const q of qs) this.dispatch(q);
  }

  /** Another node stored, or released, messages on a queue this node consumes. */
  queuePoked(name: string): void {
    const q = this.queues.get(name);
    if (!q || q.consumers.length === 0) return;
    if (q.claiming) q.pokedWhileClaiming = true;
    q.mayHaveMore = true;
    this.dispatch(q);
  }

  /**
   * Stores the message (durable when this resolves), then hands it to a
   * consumer. When a local consumer has room the message is stored already
   * claimed by this node; otherwise it is stored unclaimed and every node
   * with consumers of the queue is told.
   */
  async publishQueue(msg: CoreMessage): Promise<string> {
    const name = (msg.target as { name: string }).name;
    const local = this.queues.get(name);
    const takeHere =
      local !== undefined &&
      this.mayClaim() &&
      local.ready.length < this.limits.queueMemoryMessages &&
      local.consumers.some((c) => c.hasCapacity());
    const storeId = await this.store.enqueue(
      { queue: name, body: msg.body, contentType: msg.contentType ?? null, headers: msg.headers, createdAt: msg.timestamp },
      takeHere ? this.nodeId : undefined,
    );
    const q = this.queues.get(name);
    if (takeHere && q) {
      q.ready.push({ storeId, msg: withId(msg, 'q' + storeId), redelivered: false });
      this.dispatch(q);
    } else if (takeHere) {
      this.release(undefined, [{ storeId, redelivered: false }], name); // its consumers left while it was being written
    } else {
      if (q) this.queuePoked(name);
      this.link?.pokeQueue(name);
    }
    return storeId;
  }

  private dispatch(q: QueueState): void {
    while (q.consumers.length > 0) {
      if (q.ready.length === 0) {
        if (q.mayHaveMore) void this.claim(q);
        return;
      }
      const consumer = this.pickConsumer(q);
      if (!consumer) return;
      const entry = q.ready.shift()!;
      this.deliverQueued(q, consumer, entry);
    }
  }

  private pickConsumer(q: QueueState): Consumer | undefined {
    const n = q.consumers.length;
    for (let i = 0; i < n; i++) {
      const c = q.consumers[(q.next + i) % n]!;
      if (c.hasCapacity()) {
        q.next = (q.next + i + 1) % n;
        return c;
      }
    }
    return undefined;
  }

  private deliverQueued(q: QueueState, consumer: Consumer, entry: QueuedEntry): void {
    q.inflight++;
    let settled = false;
    this.safeDeliver(consumer, entry.msg, {
      redelivered: entry.redelivered,
      settle: (outcome) => {
        if (settled) return;
        settled = true;
        q.inflight--;
        if (outcome === 'ack') {
          void this.store.dequeue(entry.storeId).catch((err: unknown) => {
            this.log.error({ err, queue: q.name, id: entry.storeId }, 'could not remove a consumed queue message');
          });
        } else if (q.consumers.length > 0) {
          q.ready.unshift({ ...entry, redelivered: true });
          // Let the current call stack finish (e.g. a NACK loop) before dispatching again.
          setImmediate(() => this.dispatch(q));
        } else {
          this.release(q, [{ storeId: entry.storeId, redelivered: true }]);
        }
        if (q.consumers.length === 0 && q.inflight === 0 && this.queues.get(q.name) === q) this.queues.delete(q.name);
      },
    });
  }

  /** Alone, always; in a cluster, only while the other nodes can see this one (see ClusterLink.connected). */
  private mayClaim(): boolean {
    return this.link === undefined || this.link.connected;
  }

  /** The cluster link is back (and each heartbeat): every local queue looks for waiting messages again. */
  recheckQueues(): void {
    for (const q of this.queues.values()) {
      q.mayHaveMore = true;
      this.dispatch(q);
    }
  }

  /** Claims waiting messages from the store: a batch alone, a few per ready consumer in a cluster. */
  private async claim(q: QueueState): Promise<void> {
    if (q.claiming || !this.mayClaim() || !q.consumers.some((c) => c.hasCapacity())) return;
    q.claiming = true;
    q.pokedWhileClaiming = false;
    const limit = this.link ? Math.min(BACKLOG_BATCH, 4 * q.consumers.filter((c) => c.hasCapacity()).length) : BACKLOG_BATCH;
    try {
      const rows = await this.store.claimQueue(q.name, this.nodeId, limit);
      for (const r of rows) {
        q.ready.push({
          storeId: r.id,
          redelivered: r.redelivered,
          msg: createMessage({
            id: 'q' + r.id,
            target: { kind: 'queue', name: q.name },
            body: r.body,
            contentType: r.contentType ?? undefined,
            headers: r.headers,
            timestamp: r.createdAt,
          }),
        });
      }
      if (rows.length < limit && !q.pokedWhileClaiming) q.mayHaveMore = false;
    } catch (err) {
      this.log.error({ err, queue: q.name }, 'could not claim queue messages');
      q.claiming = false;
      return;
    }
    q.claiming = false;
    if (q.consumers.length === 0) {
      // Everyone left while the claim ran.
      this.release(q, q.ready);
      q.ready = [];
      return;
    }
    if (q.ready.length > 0 || q.mayHaveMore) this.dispatch(q);
  }

  /** Hands claimed messages back to the store and tells the other nodes. */
  private release(q: QueueState | undefined, entries: readonly { storeId: string; redelivered: boolean }[], name = q?.name ?? ''): void {
    if (entries.length === 0) return;
    const again = entries.filter((e) => e.redelivered).map((e) => e.storeId);
    const fresh = entries.filter((e) => !e.redelivered).map((e) => e.storeId);
    const p = Promise.all([
      again.length ? this.store.releaseQueued(again, true) : undefined,
      fresh.length ? this.store.releaseQueued(fresh, false) : undefined,
    ]).then(
      () => this.link?.pokeQueue(name),
      (err: unknown) => this.log.error({ err, queue: name }, 'could not release queue messages'),
    );
    this.releases.add(p);
    void p.finally(() => this.releases.delete(p));
  }

  /** Hands back every claimed, undelivered message (shutdown) and waits for the store. */
  async releaseAll(): Promise<void> {
    for (const q of this.queues.values()) {
      this.release(q, q.ready);
      q.ready = [];
    }
    while (this.releases.size > 0) await Promise.all([...this.releases]);
  }

  /** Topic subscriptions on this node (for tests and the console). */
  get topicSubscriptions(): number {
    return this.topics.size;
  }

  /** Queue depth in memory and in flight (for tests and the console). */
  queueStats(name: string): { ready: number; inflight: number; consumers: number } | undefined {
    const q = this.queues.get(name);
    return q && { ready: q.ready.length, inflight: q.inflight, consumers: q.consumers.length };
  }

  // ---- server-side destinations ---------------------------------------------------

  /** Registers a handler for destinations starting with `prefix` (an exact name when it does not end in `/`). */
  registerApp(prefix: string, handler: AppHandler): void {
    this.apps.push([prefix, handler]);
    this.apps.sort((a, b) => b[0].length - a[0].length);
  }

  findApp(destination: string): AppHandler | undefined {
    for (const [prefix, handler] of this.apps) {
      if (prefix.endsWith('/') ? destination.startsWith(prefix) : destination === prefix) return handler;
    }
    return undefined;
  }
}

const NO_SETTLE: Delivery = { redelivered: false, settle: undefined };

function withId(msg: CoreMessage, id: string): CoreMessage {
  return { ...msg, id, encoded: new Map<string, Buffer>() };
}
