/**
 * Topic fan-out: a published message goes to every current subscriber whose
 * filter matches its topic (`+` and `#` wildcards), fire-and-forget.
 *
 * The contract:
 * - `subscribe(filter, consumer)` / `unsubscribe`: a plain subscription
 *   (the same consumer and filter twice are one subscription).
 *   With `since`, the subscriber first gets what the topic's history holds
 *   after that point (asked of the `TopicAuthority`), then live messages,
 *   with no gap and no record twice.
 * - `subscribeShared(group, filter, consumer)`: `$share/{group}/{filter}`.
 *   The group is one subscriber of the index; each message goes to one
 *   member, round-robin among those with capacity and allowed to see it.
 * - `deliver(msg)` hands the message to this node's subscribers and returns
 *   how many got it. Sending it to other nodes is the caller's business, and
 *   so is anything a protocol decides per subscriber (no-local, retain,
 *   QoS): every matching consumer gets the message.
 * - A message with an `audience` reaches only consumers in it.
 * - Deliveries carry no `settle`: a topic does not wait for anyone.
 * - The cluster link hears when this node starts or stops needing a filter
 *   (plain or shared) and a shared group, and picks the one node that serves
 *   a group per message.
 */
import type { Logger } from '../log.js';
import type { Principal } from './auth.js';
import type { ClusterLink } from './cluster-link.js';
import { deliverSafely, NO_SETTLE, type Consumer, type Delivery } from './consumer.js';
import { inAudience, type CoreMessage } from './message.js';
import { TopicIndex } from './router.js';

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

/** What the topic engine asks of the cluster. */
export type TopicLink = Pick<ClusterLink, 'interest' | 'sharedInterest' | 'sharedPick'>;

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

export class Topics {
  private readonly index = new TopicIndex<Consumer>();
  /** Shared groups apart from plain subscribers: in a cluster, one node per message serves a group. */
  private readonly sharedIndex = new TopicIndex<SharedGroup>();
  private readonly shared = new Map<string, SharedGroup>();
  /** Local subscriptions per topic filter (plain and shared), to tell the cluster link what this node needs. */
  private readonly filterUse = new Map<string, number>();
  /** Subscribers still being sent their stored history; live messages wait here meanwhile. */
  private readonly replaying = new Map<Consumer, CoreMessage[]>();
  private authority: TopicAuthority | undefined;
  private link: TopicLink | undefined;

  constructor(private readonly log: Logger) {}

  setClusterLink(link: TopicLink): void {
    this.link = link;
  }

  setAuthority(authority: TopicAuthority): void {
    this.authority = authority;
  }

  /**
   * Why no client may publish to `topic` directly, whatever its rights:
   * `$` topics belong to the server, and topics an authority writes itself
   * (chat threads) take messages only through that authority.
   * Synchronous unless the authority must look the topic up.
   */
  publishRefusal(topic: string): string | undefined | Promise<string | undefined> {
    if (topic.startsWith('$')) return `topics starting with "$" (${topic.slice(0, 100)}) are written by the server only`;
    return this.authority?.publishRefusal(topic);
  }

  /** Why `principal` may not subscribe to `filter`, or undefined when it may. */
  async authorize(principal: Principal, filter: string): Promise<string | undefined> {
    return this.authority?.authorize(principal, filter);
  }

  subscribe(filter: string, consumer: Consumer, since?: { principal: Principal; position: string }): void {
    if (this.index.add(filter, consumer)) this.useFilter(filter, 1);
    if (since && this.authority) {
      this.replaying.set(consumer, []);
      this.authority.backlog(since.principal, filter, since.position).then(
        (backlog) => this.finishReplay(consumer, backlog ?? []),
        (err: unknown) => {
          this.log.error({ err, filter }, 'could not read topic history for recovery');
          this.finishReplay(consumer, []);
        },
      );
    }
  }

  unsubscribe(filter: string, consumer: Consumer): void {
    if (this.index.remove(filter, consumer)) this.useFilter(filter, -1);
    this.replaying.delete(consumer);
  }

  /** History first, then what arrived live meanwhile, each record once. */
  private finishReplay(consumer: Consumer, backlog: CoreMessage[]): void {
    const live = this.replaying.get(consumer);
    this.replaying.delete(consumer);
    if (!live) return; // unsubscribed meanwhile
    const seen = new Set<string>();
    for (const m of backlog) {
      if (m.recordId) seen.add(m.recordId);
      deliverSafely(this.log, consumer, m, NO_SETTLE);
    }
    for (const m of live) if (!m.recordId || !seen.has(m.recordId)) deliverSafely(this.log, consumer, m, NO_SETTLE);
  }

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
    if (!g.members.includes(consumer)) g.members.push(consumer);
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

  /**
   * Hands `msg` (a topic message) to this node's matching subscribers; returns how many got it.
   * `receivers` (a trace's): each consumer that got it is added (a shared group as itself).
   */
  deliver(msg: CoreMessage, receivers?: Consumer[]): number {
    let n = 0;
    const audience = msg.audience;
    const topic = (msg.target as { topic: string }).topic;
    const replaying = this.replaying.size > 0 ? this.replaying : undefined; // almost always empty: skip the lookup
    this.index.match(topic, (c) => {
      if (audience !== undefined && !inAudience(audience, c.principal)) return;
      n++;
      receivers?.push(c);
      const waiting = replaying?.get(c);
      if (waiting) waiting.push(msg);
      else deliverSafely(this.log, c, msg, NO_SETTLE);
    });
    if (this.shared.size > 0) {
      this.sharedIndex.match(topic, (g) => {
        if (this.link && !this.link.sharedPick(g.group, g.filter, msg)) return;
        n++;
        receivers?.push(g);
        deliverSafely(this.log, g, msg, NO_SETTLE);
      });
    }
    return n;
  }

  /** Plain subscriptions on this node. */
  get size(): number {
    return this.index.size;
  }

  private useFilter(filter: string, delta: 1 | -1): void {
    const n = (this.filterUse.get(filter) ?? 0) + delta;
    if (n <= 0) this.filterUse.delete(filter);
    else this.filterUse.set(filter, n);
    if (n === 1 && delta === 1) this.link?.interest('topic', filter, true);
    if (n <= 0) this.link?.interest('topic', filter, false);
  }
}
