/**
 * The broker: where every protocol's publishes meet every protocol's
 * subscriptions. A thin façade over three engines, one per kind of
 * destination:
 *
 * - topic (`topics.ts`): fan-out to current subscribers, fire-and-forget;
 *   shared groups get one copy per group.
 * - user mailbox (`user-mailboxes.ts`): `(user, name)`; every subscribed
 *   session of that user gets a copy. A message left unacknowledged by a
 *   session that goes away is parked and handed to the user's next
 *   subscriber of that name.
 * - queue (`queues.ts`): point to point; each message is stored until one
 *   consumer acknowledges it; consumers compete, round-robin, within their
 *   windows.
 *
 * The façade forwards topic and user messages to other nodes (cluster mode)
 * and routes what they send back; the engines deliver on this node only.
 * Server-side destinations (`/app/…`, `/test`) are handlers registered by
 * prefix; the protocol adapter routes to them.
 */
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { Principal } from './auth.js';
import type { ClusterLink } from './cluster-link.js';
import type { Consumer } from './consumer.js';
import type { CoreMessage, HeaderList } from './message.js';
import { Queues, type QueueLimits } from './queues.js';
import type { BrokerTap } from './trace.js';
import { Topics, type TopicAuthority } from './topics.js';
import { UserMailboxes, type DurableMailbox, type MailboxLimits } from './user-mailboxes.js';

export type { ClusterLink } from './cluster-link.js';
export type { Consumer, Delivery, Outcome } from './consumer.js';
export type { TopicAuthority } from './topics.js';
export type { DurableMailbox } from './user-mailboxes.js';

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

export type AppHandler = (req: AppRequest) => void | Promise<void>;

/** What a subscription is to: a topic filter, a shared group's filter, a queue, or a user mailbox. */
export type SubscriptionTarget =
  | { kind: 'topic'; filter: string }
  | { kind: 'shared'; group: string; filter: string }
  | { kind: 'queue'; name: string }
  | { kind: 'user'; userId: string; name: string };

/**
 * Told of what passes through the broker on this node (webhooks). Each
 * part is optional: a part left out costs the broker one check, so a
 * watcher that does not care for publishes adds nothing to their path.
 */
export interface BrokerWatcher {
  subscribed?(consumer: Consumer, target: SubscriptionTarget): void;
  /** Also when a session's subscriptions end with it; possibly for one never subscribed (cleanup is idempotent). */
  unsubscribed?(consumer: Consumer, target: SubscriptionTarget): void;
  /** A topic message published on this node: not one from another node, nor this node's own `$SYS` statistics. */
  publishedTopic?(msg: CoreMessage): void;
  /** A user-mailbox message published on this node, and how many of this node's sessions got it. */
  publishedUser?(msg: CoreMessage, localDeliveries: number): void;
}

export type BrokerLimits = QueueLimits & MailboxLimits;

const RESOLVED = Promise.resolve();

/** A route hold on a single node: nothing to wait for. */
const NO_HOLD = { ready: Promise.resolve(), release: (): void => undefined };

export class Broker {
  private readonly topics: Topics;
  private readonly mailboxes: UserMailboxes;
  private readonly queues: Queues;
  private readonly apps: [prefix: string, handler: AppHandler][] = [];
  private link: ClusterLink | undefined;
  private durableTap: ((msg: CoreMessage) => Promise<void> | undefined) | undefined;
  private readonly commits = new WeakMap<CoreMessage, Promise<void>>();
  private watcher: BrokerWatcher | undefined;
  /** The watcher's publish parts, kept apart so the publish paths check one field. */
  private topicWatch: ((msg: CoreMessage) => void) | undefined;
  private userWatch: ((msg: CoreMessage, localDeliveries: number) => void) | undefined;
  /** The console's traces (core/trace.ts): set only while one is open, so publishes check one field otherwise. */
  private tap: BrokerTap | undefined;

  constructor(
    store: Store,
    log: Logger,
    limits: BrokerLimits,
    /** This node's owner id when alone (store/leases.ts): who claims queue messages and holds MQTT sessions. */
    private readonly localId = 'local',
  ) {
    this.topics = new Topics(log);
    this.mailboxes = new UserMailboxes(log, limits);
    this.queues = new Queues(store, log, limits, localId);
  }

  /** Sets the one watcher (webhooks). */
  watch(watcher: BrokerWatcher): void {
    this.watcher = watcher;
    this.topicWatch = watcher.publishedTopic?.bind(watcher);
    this.userWatch = watcher.publishedUser?.bind(watcher);
  }

  /** Sets (a trace opened) or unsets (the last one closed) the tap that sees traced topic messages pass. */
  setTap(tap: BrokerTap | undefined): void {
    this.tap = tap;
  }

  /** Delivers a topic message here, telling the tap who got it when its topic is traced. */
  private deliverTopic(msg: CoreMessage, origin: 'published' | 'received'): number {
    const tap = this.tap;
    if (tap === undefined || !tap.wants((msg.target as { topic: string }).topic)) return this.topics.deliver(msg);
    const receivers: Consumer[] = [];
    const n = this.topics.deliver(msg, receivers);
    tap.passed(msg, receivers, origin);
    return n;
  }

  // ---- cluster -----------------------------------------------------------------

  /** Joins a cluster: from now on, publishes reach other nodes and theirs reach this one. */
  setClusterLink(link: ClusterLink): void {
    this.link = link;
    this.topics.setClusterLink(link);
    this.mailboxes.setClusterLink(link);
    this.queues.setClusterLink(link);
  }

  get nodeId(): string {
    return this.link?.nodeId ?? this.localId;
  }

  /** The owner id of this node's incarnation: what its queue claims and MQTT sessions carry. */
  get owner(): string {
    return this.link?.owner ?? this.localId;
  }

  /**
   * Makes messages for a topic filter or a user published on any node reach
   * this one, for as long as the hold lasts: `ready` resolves once every
   * node routes them here. A subscription is acknowledged (RECEIPT, SUBACK,
   * the JSON `ok`) after `ready` and subscribed before `release`, so a
   * message sent anywhere right after the acknowledgement is not missed.
   */
  holdRoute(kind: 'topic' | 'user', key: string): { ready: Promise<void>; release(): void } {
    const link = this.link;
    if (!link) return NO_HOLD;
    link.interest(kind, key, true);
    let held = true;
    return {
      ready: link.routeReady(kind, key),
      release: () => {
        if (held) link.interest(kind, key, false);
        held = false;
      },
    };
  }

  /** This incarnation was fenced: the queue messages it had claimed are other nodes' now. */
  forgetClaims(): void {
    this.queues.forgetClaims();
  }

  /** A topic or user message published on another node. */
  receiveRemote(msg: CoreMessage): void {
    if (msg.target.kind === 'topic') this.deliverTopic(msg, 'received');
    else if (msg.target.kind === 'user') this.mailboxes.deliver(msg);
  }

  /** Another node stored, or released, messages on a queue this node consumes. */
  queuePoked(name: string): void {
    this.queues.poked(name);
  }

  /** The cluster link is back (and each heartbeat): every local queue looks for waiting messages again. */
  recheckQueues(): void {
    this.queues.recheck();
  }

  /** The cluster bus was away: subscribers of durable mailboxes get the stored messages that did not reach them. */
  catchUpMailboxes(): Promise<void> {
    return this.mailboxes.catchUp();
  }

  // ---- topics ----------------------------------------------------------------

  setTopicAuthority(authority: TopicAuthority): void {
    this.topics.setAuthority(authority);
  }

  /**
   * Why no client may publish to `topic` directly, whatever its rights:
   * `$` topics belong to the server, and topics an authority writes itself
   * (chat threads) take messages only through that authority. Every
   * protocol's publish and the HTTP publish ask this before the ACL.
   * Synchronous unless the authority must look the topic up.
   */
  publishRefusal(topic: string): string | undefined | Promise<string | undefined> {
    return this.topics.publishRefusal(topic);
  }

  /**
   * Why `principal` may not subscribe to `filter`, or undefined when it may.
   * `$SYS` statistics are for staff (admins and services), in every protocol.
   */
  async authorizeTopic(principal: Principal, filter: string): Promise<string | undefined> {
    if (filter.startsWith('$SYS') && principal.role === 'user') return `${filter.slice(0, 100)}: $SYS statistics are for admins and services`;
    return this.topics.authorize(principal, filter);
  }

  /**
   * Subscribes; with `since`, the subscriber first gets what the topic's
   * history holds after that point, then live messages, with no gap and no
   * message twice (live ones wait while the history is read).
   */
  subscribeTopic(filter: string, consumer: Consumer, since?: { principal: Principal; position: string }): void {
    this.topics.subscribe(filter, consumer, since);
    this.watcher?.subscribed?.(consumer, { kind: 'topic', filter });
  }

  unsubscribeTopic(filter: string, consumer: Consumer): void {
    this.topics.unsubscribe(filter, consumer);
    this.watcher?.unsubscribed?.(consumer, { kind: 'topic', filter });
  }

  /** Joins `consumer` to the shared subscription `$share/{group}/{filter}`. */
  subscribeShared(group: string, filter: string, consumer: Consumer): void {
    this.topics.subscribeShared(group, filter, consumer);
    this.watcher?.subscribed?.(consumer, { kind: 'shared', group, filter });
  }

  unsubscribeShared(group: string, filter: string, consumer: Consumer): void {
    this.topics.unsubscribeShared(group, filter, consumer);
    this.watcher?.unsubscribed?.(consumer, { kind: 'shared', group, filter });
  }

  /**
   * Fan-out to current subscribers, here and (in a cluster) on other nodes;
   * returns the number of deliveries on this node. `local` keeps it on this
   * node (per-node statistics such as `$SYS`).
   */
  publishTopic(msg: CoreMessage, local = false): number {
    if (!local) {
      this.link?.forward(msg);
      const stored = msg.qos > 0 ? this.durableTap?.(msg) : undefined;
      if (stored) {
        stored.catch(() => undefined); // whoever acknowledges awaits committed(); nobody else must see it reject
        this.commits.set(msg, stored);
      }
      if (this.topicWatch) this.topicWatch(msg);
    }
    return this.deliverTopic(msg, 'published');
  }

  /**
   * Stores QoS 1/2 topic messages for receivers that must not lose them
   * wherever they are held (cluster mode: MQTT persistent sessions); see
   * `committed`.
   */
  setDurableTap(tap: (msg: CoreMessage) => Promise<void> | undefined): void {
    this.durableTap = tap;
  }

  /**
   * Resolves once a topic message published here is stored for every
   * durable receiver (at once when there is none); rejects when the store
   * failed. A protocol acknowledges a publish only after this.
   */
  committed(msg: CoreMessage): Promise<void> {
    return this.commits.get(msg) ?? RESOLVED;
  }

  /** Topic subscriptions on this node (for tests and the console). */
  get topicSubscriptions(): number {
    return this.topics.size;
  }

  // ---- user mailboxes --------------------------------------------------------

  /** Makes mailbox `name` durable: its stored backlog is replayed to each new subscriber before live traffic. */
  registerDurableMailbox(name: string, mailbox: DurableMailbox): void {
    this.mailboxes.registerDurable(name, mailbox);
  }

  subscribeUser(userId: string, name: string, consumer: Consumer): void {
    this.mailboxes.subscribe(userId, name, consumer);
    this.watcher?.subscribed?.(consumer, { kind: 'user', userId, name });
  }

  unsubscribeUser(userId: string, name: string, consumer: Consumer): void {
    this.mailboxes.unsubscribe(userId, name, consumer);
    this.watcher?.unsubscribed?.(consumer, { kind: 'user', userId, name });
  }

  /** Delivers to every subscribed session of the user, on every node; returns the number of deliveries on this node. */
  publishUser(msg: CoreMessage): number {
    this.link?.forward(msg);
    const delivered = this.mailboxes.deliver(msg);
    if (this.userWatch) this.userWatch(msg, delivered);
    return delivered;
  }

  // ---- queues ----------------------------------------------------------------

  subscribeQueue(name: string, consumer: Consumer): void {
    this.queues.subscribe(name, consumer);
    this.watcher?.subscribed?.(consumer, { kind: 'queue', name });
  }

  unsubscribeQueue(name: string, consumer: Consumer): void {
    this.queues.unsubscribe(name, consumer);
    this.watcher?.unsubscribed?.(consumer, { kind: 'queue', name });
  }

  /** A consumer's window opened again: give it what waits on its queues. */
  consumerReady(consumer: Consumer): void {
    this.queues.consumerReady(consumer);
  }

  /**
   * Stores the message (durable when this resolves), then hands it to a
   * consumer. When a local consumer has room the message is stored already
   * claimed by this node; otherwise it is stored unclaimed and every node
   * with consumers of the queue is told. Resolves to the store id.
   */
  publishQueue(msg: CoreMessage): Promise<string> {
    return this.queues.publish(msg);
  }

  /** Hands back every claimed, undelivered message (shutdown) and waits for the store. */
  releaseAll(): Promise<void> {
    return this.queues.releaseAll();
  }

  /** Queues and user mailboxes as this node holds them now (the console's Queues page). */
  liveFigures(): { queues: ReturnType<Queues['figures']>; mailboxes: ReturnType<UserMailboxes['figures']> } {
    return { queues: this.queues.figures(), mailboxes: this.mailboxes.figures() };
  }

  /** Queue depth in memory and in flight (for tests and the console). */
  queueStats(name: string): { ready: number; inflight: number; consumers: number } | undefined {
    return this.queues.stats(name);
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
