/**
 * User mailboxes: `(user, name)` destinations such as `/user/queue/strm`.
 *
 * The contract:
 * - `deliver(msg)` gives every session of the user subscribed to that name
 *   its own copy, and returns how many sessions on this node got one.
 *   Sending it to other nodes is the caller's business.
 * - Each copy is settled by its consumer, once (later settles are
 *   ignored). `ack`: consumed (a durable mailbox hears of it). `nack`: the
 *   same session gets it again, marked redelivered. `requeue` (the session
 *   went away): when no session of the user is subscribed to the name any
 *   more, the message is parked and the user's next subscriber of the name
 *   gets it first; otherwise the other sessions have their copies and this
 *   one is dropped.
 * - A message delivered `maxRedeliveries` times is dropped as poison; at
 *   most `parkedPerUser` messages are parked per user.
 * - A durable mailbox keeps its messages in the store: a new subscriber is
 *   sent the stored backlog, then what was parked for the mailbox (messages
 *   the store does not keep), then live messages, each record once. A
 *   stored message left unacknowledged stays owed in the store instead of
 *   being parked.
 * - The cluster link hears when this node starts or stops having
 *   subscribers of a user.
 * - `catchUp()` (after the cluster bus was away): each subscriber of a
 *   durable mailbox is sent the stored messages it has not been sent yet
 *   (what other nodes published meanwhile never crossed the bus).
 */
import type { Logger } from '../log.js';
import type { ClusterLink } from './cluster-link.js';
import { deliverSafely, type Consumer } from './consumer.js';
import type { CoreMessage } from './message.js';

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

export interface MailboxLimits {
  /** Unacknowledged user-mailbox messages parked per user while no session is subscribed. */
  parkedPerUser: number;
  /** Deliveries of one user-mailbox message before it is dropped as poison. */
  maxRedeliveries: number;
}

/** What the mailbox engine asks of the cluster. */
export type MailboxLink = Pick<ClusterLink, 'interest'>;

/** Stored records remembered as sent, per subscriber of a durable mailbox (for catchUp). */
const SENT_MEMORY = 1000;

interface Parked {
  name: string;
  msg: CoreMessage;
  attempts: number;
}

export class UserMailboxes {
  /** Subscribers by user, then by mailbox name. */
  private readonly users = new Map<string, Map<string, Set<Consumer>>>();
  /** Messages parked per user, all mailbox names together, oldest first. */
  private readonly parked = new Map<string, Parked[]>();
  private readonly durable = new Map<string, DurableMailbox>();
  /** Stored records sent to each subscriber of a durable mailbox, oldest first (at most SENT_MEMORY per subscriber). */
  private readonly sent = new Map<Consumer, Set<string>>();
  /** Subscribers still being sent their stored backlog; live messages wait here meanwhile. */
  private readonly replaying = new Map<Consumer, CoreMessage[]>();
  /** Local consumers per user (all mailbox names), to tell the cluster link what this node needs. */
  private readonly userUse = new Map<string, number>();
  private link: MailboxLink | undefined;

  constructor(
    private readonly log: Logger,
    private readonly limits: MailboxLimits,
  ) {}

  setClusterLink(link: MailboxLink): void {
    this.link = link;
  }

  /** Makes mailbox `name` durable: its stored backlog is replayed to each new subscriber before live traffic. */
  registerDurable(name: string, mailbox: DurableMailbox): void {
    this.durable.set(name, mailbox);
  }

  subscribe(userId: string, name: string, consumer: Consumer): void {
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
    for (const p of this.unpark(userId, name)) this.deliverCopy(userId, name, consumer, p.msg, p.attempts, true);
  }

  unsubscribe(userId: string, name: string, consumer: Consumer): void {
    const byName = this.users.get(userId);
    const set = byName?.get(name);
    this.replaying.delete(consumer);
    this.sent.delete(consumer);
    if (!set?.delete(consumer)) return;
    this.useUser(userId, -1);
    if (set.size === 0) byName!.delete(name);
    if (byName!.size === 0) this.users.delete(userId);
  }

  /** Hands `msg` (a user message) to this node's sessions of the user subscribed to its name; returns how many. */
  deliver(msg: CoreMessage): number {
    const t = msg.target as { userId: string; name: string };
    const set = this.users.get(t.userId)?.get(t.name);
    if (!set) return 0;
    const durable = msg.recordId !== undefined && this.durable.has(t.name);
    for (const c of set) {
      const waiting = this.replaying.get(c);
      if (waiting) waiting.push(msg);
      // A stored message a catch-up sent from the store already, arriving late over the bus: once is enough.
      else if (!durable || !this.sent.get(c)?.has(msg.recordId!)) this.deliverCopy(t.userId, t.name, c, msg, 1, false);
    }
    return set.size;
  }

  /** Backlog first, then messages parked for the mailbox (those the store does not keep), then what arrived live meanwhile, each record once. */
  private finishReplay(userId: string, name: string, consumer: Consumer, backlog: CoreMessage[]): void {
    const live = this.replaying.get(consumer);
    this.replaying.delete(consumer);
    if (!live || !this.users.get(userId)?.get(name)?.has(consumer)) return; // unsubscribed meanwhile
    const seen = new Set<string>();
    for (const m of backlog) {
      if (m.recordId) seen.add(m.recordId);
      this.deliverCopy(userId, name, consumer, m, 1, false);
    }
    for (const p of this.unpark(userId, name)) this.deliverCopy(userId, name, consumer, p.msg, p.attempts, true);
    for (const m of live) if (!m.recordId || !seen.has(m.recordId)) this.deliverCopy(userId, name, consumer, m, 1, false);
  }

  /**
   * Sends every subscriber of a durable mailbox the stored messages it has
   * not been sent yet, oldest first (the bus was away: what other nodes
   * published meanwhile is only in the store).
   */
  async catchUp(): Promise<void> {
    for (const [name, durable] of this.durable) {
      for (const [userId, byName] of [...this.users]) {
        const subscribers = byName.get(name);
        if (!subscribers || subscribers.size === 0) continue;
        const owed = await durable.pending(userId);
        for (const c of subscribers) {
          if (this.replaying.has(c) || !this.users.get(userId)?.get(name)?.has(c)) continue;
          const sent = this.sent.get(c);
          for (const m of owed) if (m.recordId !== undefined && !sent?.has(m.recordId)) this.deliverCopy(userId, name, c, m, 1, false);
        }
      }
    }
  }

  /**
   * Mailboxes with subscribers or parked messages on this node (the
   * console): subscribed sessions, and messages parked while none was, with
   * the time of the oldest.
   */
  figures(): { userId: string; name: string; subscribers: number; parked: number; oldestParkedAt: number | null }[] {
    const out = new Map<string, { userId: string; name: string; subscribers: number; parked: number; oldestParkedAt: number | null }>();
    const at = (userId: string, name: string) => {
      const key = `${userId}\u0000${name}`;
      let f = out.get(key);
      if (!f) out.set(key, (f = { userId, name, subscribers: 0, parked: 0, oldestParkedAt: null }));
      return f;
    };
    for (const [userId, byName] of this.users) for (const [name, set] of byName) at(userId, name).subscribers = set.size;
    for (const [userId, list] of this.parked) {
      for (const p of list) {
        const f = at(userId, p.name);
        f.parked++;
        f.oldestParkedAt = Math.min(f.oldestParkedAt ?? Infinity, p.msg.timestamp);
      }
    }
    return [...out.values()];
  }

  /** One session's copy; `attempt` counts the deliveries of this message so far, this one included. */
  private deliverCopy(userId: string, name: string, consumer: Consumer, msg: CoreMessage, attempt: number, redelivered: boolean): void {
    if (msg.recordId !== undefined && this.durable.has(name)) this.remember(consumer, msg.recordId);
    let settled = false;
    deliverSafely(this.log, consumer, msg, {
      redelivered,
      settle: (outcome) => {
        if (settled) return;
        settled = true;
        if (outcome === 'ack') {
          if (msg.recordId !== undefined) this.durable.get(name)?.acked(userId, msg);
          return;
        }
        // Not acknowledged: a catch-up may send it again (the store still owes it).
        if (msg.recordId !== undefined) this.sent.get(consumer)?.delete(msg.recordId);
        // A stored message left unacknowledged stays owed in the store; the next subscriber gets it from there.
        const stored = msg.recordId !== undefined && this.durable.has(name);
        if (outcome === 'requeue' && stored) return;
        if (attempt >= this.limits.maxRedeliveries) {
          this.log.warn({ userId, name, messageId: msg.id, attempt }, 'user message dropped after too many redeliveries');
          return;
        }
        const stillThere = this.users.get(userId)?.get(name);
        if (outcome === 'nack' && stillThere?.has(consumer)) {
          this.deliverCopy(userId, name, consumer, msg, attempt + 1, true);
        } else if ((!stillThere || stillThere.size === 0) && !stored) {
          this.park(userId, name, msg, attempt + 1);
        }
        // requeue while another session of the user is subscribed: that session has its own copy.
      },
    });
  }

  private remember(consumer: Consumer, recordId: string): void {
    let set = this.sent.get(consumer);
    if (!set) this.sent.set(consumer, (set = new Set()));
    set.add(recordId);
    // Bounded: the oldest are forgotten (one of them still owed after so long may be sent again by a catch-up).
    if (set.size > SENT_MEMORY) set.delete(set.values().next().value!);
  }

  private park(userId: string, name: string, msg: CoreMessage, attempts: number): void {
    let list = this.parked.get(userId);
    if (!list) this.parked.set(userId, (list = []));
    list.push({ name, msg, attempts });
    if (list.length > this.limits.parkedPerUser) {
      const dropped = list.shift()!;
      this.log.warn({ userId, name: dropped.name }, 'parked user messages over the limit; oldest dropped');
    }
  }

  /** Takes the messages parked for the user's mailbox `name`, oldest first. */
  private unpark(userId: string, name: string): Parked[] {
    const list = this.parked.get(userId);
    if (!list) return [];
    const taken = list.filter((p) => p.name === name);
    if (taken.length === list.length) this.parked.delete(userId);
    else if (taken.length > 0) this.parked.set(userId, list.filter((p) => p.name !== name));
    return taken;
  }

  private useUser(userId: string, delta: 1 | -1): void {
    const n = (this.userUse.get(userId) ?? 0) + delta;
    if (n <= 0) this.userUse.delete(userId);
    else this.userUse.set(userId, n);
    if (n === 1 && delta === 1) this.link?.interest('user', userId, true);
    if (n <= 0) this.link?.interest('user', userId, false);
  }
}
