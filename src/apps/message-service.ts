/**
 * The message service (the "message service" client profile of
 * docs/clients.md, over the JSON WebSocket): messages with a title, content
 * and type, sent to listed users (or to everyone online), stored with one
 * delivery row per receiver whose status moves PENDING → DELIVERED → READ.
 *
 * Delivery rides on the broker's user mailbox `messages`: every session of a
 * receiver subscribed to it gets the message, whatever its protocol (STOMP
 * `/user/queue/messages`, the JSON WebSocket, later MQTT `$user/messages`).
 * The mailbox is durable: a subscriber first gets everything still PENDING
 * for its user, oldest first, then live traffic, each record once.
 */
import type { Config } from '../config.js';
import type { Principal } from '../core/auth.js';
import { OutageLog, repeat } from '../core/background.js';
import type { Broker } from '../core/broker.js';
import { createMessage, type CoreMessage } from '../core/message.js';
import type { Presence } from '../core/presence.js';
import type { Logger } from '../log.js';
import type { Clock } from '../clock.js';
import { storeUnavailable } from '../store/errors.js';
import type { DeliveryStatus, Store, StoredMessage } from '../store/store.js';
import { orderKey, type EventSink } from '../webhooks/events.js';

export const MAILBOX = 'messages';
const BACKLOG_LIMIT = 10_000;

/** What clients see of a message: the `data` of a `message` event, and a STOMP MESSAGE body. */
export function messageView(m: StoredMessage): { id: string; title: string; content: string; type: string | number; sender: string; createdAt: string } {
  return {
    id: m.id,
    title: m.title,
    content: m.content,
    type: typeForOutput(m.type),
    sender: m.sender,
    createdAt: new Date(m.createdAt).toISOString(),
  };
}

/** The message service's back end sends `type` as a number; it is stored as text and given back as it came. */
export function typeForOutput(type: string): string | number {
  return /^(0|-?[1-9]\d{0,14})$/.test(type) ? Number(type) : type;
}

export interface SendRequest {
  title: string;
  content: string;
  type: string;
  /** User ids or names; absent = everyone online now. */
  receivers?: string[] | undefined;
}

export interface SendResult {
  id: string;
  receivers: string[];
  unknownReceivers: string[];
  delivered: number;
}

export class UnknownReceiversError extends Error {
  constructor(readonly unknown: string[]) {
    super(`none of the receivers exist: ${unknown.join(', ')}`);
  }
}

/** How long a resolved receiver is remembered, and how many are (see MessageService.receiver). */
const RECEIVER_MEMORY_MS = 5000;
const RECEIVER_MEMORY_SIZE = 10_000;

export class MessageService {
  private sweepTimer: NodeJS.Timeout | undefined;
  /** Delivery statuses the store could not take (it is down): logged once per outage. */
  private readonly statusOutage: OutageLog;
  /**
   * The webhook outbox, when webhooks are configured: a message stored for
   * a receiver with no session anywhere writes `message.undelivered` with
   * it (for a mobile push), each status change `message.delivered` or
   * `message.read`, in the same transaction.
   */
  events: EventSink | undefined;

  constructor(
    private readonly store: Store,
    private readonly broker: Broker,
    /** Who is online, on every node: a broadcast goes to them. */
    private readonly presence: Presence,
    private readonly config: Config,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.statusOutage = new OutageLog(log, 'recording delivery statuses');
    broker.registerDurableMailbox(MAILBOX, {
      pending: async (userId) => (await store.pendingFor(userId, BACKLOG_LIMIT)).map((m) => this.toCore(userId, m)),
      acked: (userId, msg) => void this.setStatus(msg.recordId!, userId, 'DELIVERED'),
    });
  }

  start(): void {
    const everyMs = this.config.messageRetentionSweepSeconds * 1000;
    this.sweepTimer = repeat(this.log, 'the message retention sweep', everyMs, () => this.sweep());
  }

  stop(): void {
    clearInterval(this.sweepTimer);
  }

  private toCore(userId: string, m: StoredMessage): CoreMessage {
    return createMessage({
      target: { kind: 'user', userId, name: MAILBOX },
      body: Buffer.from(JSON.stringify(messageView(m))),
      contentType: 'application/json',
      recordId: m.id,
      timestamp: m.createdAt,
    });
  }

  /**
   * Resolves receivers (ids or names; JWT-only users have no row and are
   * unknown here), stores the message and its rows in one transaction, then
   * delivers to every online session of each receiver.
   */
  async send(sender: Principal, req: SendRequest): Promise<SendResult> {
    const unknownReceivers: string[] = [];
    let receivers: string[];
    const names = new Map<string, string>();
    if (req.receivers === undefined) {
      receivers = await this.presence.onlineUsers();
    } else {
      const now = this.clock.now();
      for (const r of req.receivers) {
        // A receiver remembered lately is taken without an await (one microtask per receiver per send).
        const known = this.receivers.get(r);
        const user = known && known.until > now ? known : await this.readReceiver(r, now);
        if (user) names.set(user.id, user.name);
        else unknownReceivers.push(r);
      }
      receivers = [...names.keys()];
      if (receivers.length === 0) throw new UnknownReceiversError(unknownReceivers);
    }
    const createdAt = this.clock.now();
    const stored: StoredMessage = { id: '', sender: sender.name, title: req.title, content: req.content, type: req.type, createdAt };
    // A broadcast goes to those online; listed receivers may have no session anywhere, and a push is their only news.
    const hooks = this.events;
    let offline: string[] = [];
    if (hooks?.wants('message.undelivered') && req.receivers !== undefined) {
      const online = new Set(await this.presence.onlineUsers());
      offline = receivers.filter((u) => !online.has(u));
    }
    const undelivered =
      hooks && offline.length > 0
        ? (id: string) => {
            const message = messageView({ ...stored, id });
            return offline.flatMap((u) =>
              hooks.rows('message.undelivered', orderKey.user(u), { source: 'message-service', receiver: u, receiverName: names.get(u) ?? null, message }),
            );
          }
        : undefined;
    stored.id = await this.store.insertMessage({ ...stored, receivers }, undelivered);
    // One body for all receivers; only the mailbox address differs.
    const body = Buffer.from(JSON.stringify(messageView(stored)));
    let delivered = 0;
    for (const userId of receivers) {
      delivered += this.broker.publishUser(
        createMessage({ target: { kind: 'user', userId, name: MAILBOX }, body, contentType: 'application/json', recordId: stored.id, timestamp: createdAt }),
      );
    }
    return { id: stored.id, receivers, unknownReceivers, delivered };
  }

  /**
   * Reads a receiver as given (a user id or a name) and remembers it for
   * RECEIVER_MEMORY_MS (send takes a remembered one without an await): a
   * back end sends to the same users over and over, and two store reads per
   * receiver per send were a fifth of a durable send's cost. Unknown names
   * are read again every time (a user created a moment ago receives at once).
   */
  private async readReceiver(r: string, now: number): Promise<{ id: string; name: string } | undefined> {
    const user = (await this.store.getUserById(r)) ?? (await this.store.getUserByName(r));
    if (!user) return undefined;
    if (this.receivers.size >= RECEIVER_MEMORY_SIZE) this.receivers.clear();
    const entry = { id: user.id, name: user.name, until: now + RECEIVER_MEMORY_MS };
    this.receivers.set(r, entry);
    return entry;
  }
  private readonly receivers = new Map<string, { id: string; name: string; until: number }>();

  /** Moves a receiver's row forward; false when there is no such row or it is already there. */
  async setStatus(messageId: string, userId: string, status: DeliveryStatus): Promise<boolean> {
    try {
      const changed = await this.store.setDeliveryStatus(messageId, userId, status, this.clock.now(), this.statusEvents(messageId, userId, status));
      this.statusOutage.ok();
      return changed;
    } catch (err) {
      if (storeUnavailable(err)) this.statusOutage.failed(err);
      else this.log.error({ err, messageId, userId, status }, 'could not record a delivery status');
      return false;
    }
  }

  /** HTTP fallback (the message service's collectMessage): the caller's PENDING messages, now marked DELIVERED. */
  async collect(userId: string, limit: number): Promise<ReturnType<typeof messageView>[]> {
    const pending = await this.store.pendingFor(userId, limit);
    for (const m of pending) await this.store.setDeliveryStatus(m.id, userId, 'DELIVERED', this.clock.now(), this.statusEvents(m.id, userId, 'DELIVERED'));
    return pending.map(messageView);
  }

  /** The webhook event of a status change, written with it (none when no webhook takes it). */
  private statusEvents(messageId: string, userId: string, status: DeliveryStatus) {
    const type = status === 'READ' ? 'message.read' : status === 'DELIVERED' ? 'message.delivered' : undefined;
    if (!type || !this.events?.wants(type)) return undefined;
    return this.events.rows(type, orderKey.user(userId), { messageId, receiver: userId, status, at: new Date(this.clock.now()).toISOString() });
  }

  /** Retention: a few bounded steps per run, yielding between them so delivery never waits long. */
  async sweep(): Promise<number> {
    const maxAge = this.config.messageRetentionDays * 86_400_000;
    let total = 0;
    for (let step = 0; step < 100; step++) {
      const removed = await this.store.pruneMessages(this.clock.now() - maxAge, this.config.messageMaxPerUser, 500);
      total += removed;
      if (removed === 0) break;
      await new Promise((r) => setImmediate(r));
    }
    if (total > 0) this.log.info({ removed: total }, 'message retention sweep');
    return total;
  }
}
