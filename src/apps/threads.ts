/**
 * Chat threads, for the customer-service chat client profile
 * (@stomp/stompjs on `/stomp`, see docs/clients.md). A thread is a topic with members and persistent
 * history. Clients subscribe `/topic/{thread}` (the thread id with `/` turned
 * into `.`) and publish to `/app/{thread}`, or POST the same JSON to
 * `/api/v1/message/send` when the socket is down. The server validates the
 * message, stamps server time and `status: SUCCESS`, stores it (once per
 * `uid`), and broadcasts it to the thread's members.
 */
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Principal } from '../core/auth.js';
import { repeat } from '../core/background.js';
import { AppForbidden, AppRefusal, type Broker, type TopicAuthority } from '../core/broker.js';
import { topicFromDotted, topicToDotted } from '../core/destination.js';
import { createMessage, type CoreMessage } from '../core/message.js';
import { TokenBucket } from '../core/rate-limit.js';
import type { Logger } from '../log.js';
import { storeUnavailable } from '../store/errors.js';
import type { NewWebhookEvent, Store, ThreadMember, ThreadMessageRecord, ThreadRecord } from '../store/store.js';
import { orderKey, type EventSink } from '../webhooks/events.js';
import { EPHEMERAL, RECEIPTS, authoredView, readThreadMessage, viewOf, type ThreadMessageType, type ThreadMessageView } from './thread-messages.js';

export { THREAD_TYPES } from './thread-messages.js';
export type { ThreadMessageType, ThreadMessageView } from './thread-messages.js';

/** Thread ids use `/` (`org/1/visitor/7`); STOMP topics use `.`; either names the same thread. */
export function threadTopic(id: string): string {
  return topicFromDotted(id.replace(/\//g, '.'));
}

/** The form the customer-service chat client subscribes to: `org.1.visitor.7`. */
export function dottedThread(topic: string): string {
  return topicToDotted(topic);
}

/** How long a cluster node trusts "no such thread" for a publish (see ThreadService.notThreads). */
export const NOT_A_THREAD_MS = 3000;
/**
 * Topic names kept by the thread caches, in characters: publishing to many
 * distinct long topics must not pin memory for good (topics may be 64 KiB
 * each). Past it the caches start again.
 */
const CACHE_MAX_KEY_CHARS = 8 * 1024 * 1024;

function threadRefusal(topic: string): string {
  const name = dottedThread(topic);
  return `${name} is a chat thread: send to /app/${name} (or POST the message to the thread) instead of publishing to its topic`;
}

/** A thread as webhook events describe it. */
function threadData(t: ThreadRecord): { id: string; thread: string; topic: string; createdBy: string; members: ThreadMember[] } {
  return { id: t.id, thread: dottedThread(t.topic), topic: t.topic, createdBy: t.createdBy, members: t.members };
}

/** No such thread: a refusal to the sender (HTTP 404). */
export class ThreadMissing extends AppRefusal {}

interface CachedThread {
  record: ThreadRecord;
  members: Set<string>;
}

export class ThreadService implements TopicAuthority {
  private readonly cache = new Map<string, CachedThread | null>();
  /** Told when a thread's record changes here (cluster mode forwards it so other nodes forget their copy). */
  onChange: ((topic: string) => void) | undefined;
  /**
   * The webhook outbox, when webhooks are configured: `thread.created`,
   * `thread.message` (stored messages, not TYPING) and `thread.closed` are
   * written in the transaction of their change.
   */
  events: EventSink | undefined;
  /**
   * Cluster mode: "no such thread" is not remembered, since another node may
   * create the thread a moment later and its announcement can arrive after
   * the creator's client is already here.
   */
  rememberMisses = true;
  /**
   * Cluster mode's short memory of misses, for `publishRefusal` only (topic →
   * until when, ms): without it every publish to an ordinary topic would cost
   * a store read. A thread created on another node clears it here when that
   * node's announcement arrives (`forget`); only if the announcement is lost
   * can a direct publish to the new thread's topic slip through on this node,
   * for at most NOT_A_THREAD_MS after this node last looked.
   */
  private readonly notThreads = new Map<string, number>();
  /** Characters of the topic names the caches hold (counted on insert; an upper bound). */
  private cachedChars = 0;

  /** Empties both caches (they only ever save a store read). */
  private forgetAll(): void {
    this.cache.clear();
    this.notThreads.clear();
    this.cachedChars = 0;
  }

  /** Store reads under way, so a burst of publishes to one new topic reads it once. */
  private readonly loading = new Map<string, Promise<CachedThread | null>>();
  /** Bumped by every change or forget: a read that started before one is not cached. */
  private generation = 0;
  private readonly typing = new Map<string, TokenBucket>();
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly broker: Broker,
    private readonly config: Config,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    broker.setTopicAuthority(this);
    broker.registerApp('/app/', (req) =>
      this.publish(req.principal, req.body.toString('utf8'), { destination: req.destination.slice('/app/'.length), sessionId: req.sessionId }).then(() => undefined),
    );
  }

  start(): void {
    if (this.config.threadIdleCloseSeconds > 0) {
      const every = Math.min(60_000, this.config.threadIdleCloseSeconds * 500);
      this.sweepTimer = repeat(this.log, 'the idle-thread sweep', every, () => this.closeIdle());
    }
  }

  stop(): void {
    clearInterval(this.sweepTimer);
  }

  // ---- threads ---------------------------------------------------------------------

  private load(topic: string): Promise<CachedThread | null> {
    if (this.cache.has(topic)) return Promise.resolve(this.cache.get(topic)!);
    let pending = this.loading.get(topic);
    if (!pending) {
      const read = this.fetch(topic).finally(() => {
        if (this.loading.get(topic) === read) this.loading.delete(topic);
      });
      this.loading.set(topic, (pending = read));
    }
    return pending;
  }

  /** One store read for a topic, remembered unless the thread changed while it ran. */
  private async fetch(topic: string): Promise<CachedThread | null> {
    const generation = this.generation;
    const record = await this.store.getThread(topic);
    const cached = record ? { record, members: new Set(record.members.map((m) => m.userId)) } : null;
    if (generation !== this.generation) return cached; // created, changed or forgotten meanwhile: do not keep a stale answer
    if (this.cache.size > 100_000 || this.cachedChars > CACHE_MAX_KEY_CHARS) this.forgetAll();
    if (cached || this.rememberMisses) {
      this.cachedChars += topic.length;
      this.cache.set(topic, cached);
    }
    else this.rememberNotThread(topic);
    return cached;
  }

  /** Cluster mode: `topic` was no thread a moment ago; publishes to it skip the store for a few seconds. */
  private rememberNotThread(topic: string): void {
    const now = this.clock.now();
    if (this.cachedChars > CACHE_MAX_KEY_CHARS) this.forgetAll();
    this.cachedChars += topic.length;
    if (this.notThreads.size >= 100_000) {
      for (const [t, until] of this.notThreads) if (until <= now) this.notThreads.delete(t);
      if (this.notThreads.size >= 100_000) this.notThreads.clear();
    }
    this.notThreads.set(topic, now + NOT_A_THREAD_MS);
  }

  /** Members, admins and services may read and write a thread. */
  private mayJoin(p: Principal, t: CachedThread): boolean {
    return p.role !== 'user' || t.members.has(p.userId);
  }

  async get(id: string): Promise<ThreadRecord> {
    const t = await this.load(threadTopic(id));
    if (!t) throw new ThreadMissing(`no thread ${id}`);
    return t.record;
  }

  async getFor(p: Principal, id: string): Promise<ThreadRecord> {
    const t = await this.load(threadTopic(id));
    if (!t) throw new ThreadMissing(`no thread ${id}`);
    if (!this.mayJoin(p, t)) throw new AppForbidden(`you are not a member of thread ${dottedThread(t.record.topic)}`);
    return t.record;
  }

  /** Drops the cached copy of a thread (it changed on another node). */
  forget(topic: string): void {
    this.generation++;
    this.cache.delete(topic);
    this.notThreads.delete(topic);
    this.loading.delete(topic); // a read under way may predate the change: the next caller reads again
  }

  private changed(topic: string): void {
    this.forget(topic);
    this.onChange?.(topic);
  }

  async create(by: Principal, id: string, members: ThreadMember[]): Promise<ThreadRecord> {
    const topic = threadTopic(id);
    this.forget(topic);
    const hooks = this.events?.wants('thread.created') ? this.events : undefined;
    const events = hooks && ((t: ThreadRecord) => hooks.rows('thread.created', orderKey.thread(t.id), { thread: threadData(t) }));
    const record = await this.store.createThread(topic, by.userId, this.clock.now(), members, events);
    this.changed(topic);
    this.cache.set(topic, { record, members: new Set(members.map((m) => m.userId)) });
    return record;
  }

  async addMember(by: Principal, id: string, member: ThreadMember): Promise<ThreadRecord> {
    const record = await this.getFor(by, id);
    await this.store.addThreadMember(record.id, member);
    this.changed(record.topic);
    return (await this.load(record.topic))!.record;
  }

  async close(by: Principal, id: string, reason: string): Promise<ThreadRecord> {
    const record = await this.getFor(by, id);
    if (by.role === 'user' && !record.members.some((m) => m.userId === by.userId && m.role === 'agent')) {
      throw new AppForbidden(`only an agent of thread ${dottedThread(record.topic)} or an admin can close it`);
    }
    if (record.status === 'CLOSED') return record;
    await this.announce(record, 'AUTO_CLOSED', reason, by);
    await this.store.setThreadStatus(record.id, 'CLOSED', this.clock.now(), this.closedEvents(record, reason, by));
    this.changed(record.topic);
    return (await this.load(record.topic))!.record;
  }

  /** Closes threads idle longer than threadIdleCloseSeconds, with an AUTO_CLOSED message. */
  async closeIdle(): Promise<number> {
    const before = this.clock.now() - this.config.threadIdleCloseSeconds * 1000;
    const idle = await this.store.idleThreads(before, 500);
    const system: Principal = { userId: 'system', name: 'system', role: 'service', credential: { kind: 'anonymous' } };
    for (const t of idle) {
      try {
        // Close first: in a cluster every node sweeps, and only the one whose update wins announces it.
        const reason = `closed after ${this.config.threadIdleCloseSeconds} s without messages`;
        if (!(await this.store.setThreadStatus(t.id, 'CLOSED', this.clock.now(), this.closedEvents(t, reason, system)))) continue;
        this.changed(t.topic);
        await this.announce(t, 'AUTO_CLOSED', `closed after ${this.config.threadIdleCloseSeconds} s without messages`, system);
      } catch (err) {
        // The store gone: the sweep stops here and is tried again (and logged once) at its next run.
        if (storeUnavailable(err)) throw err;
        this.log.error({ err, thread: t.topic }, 'could not auto-close a thread');
      }
    }
    return idle.length;
  }

  /** The `thread.closed` event, written with the status change (none when no webhook takes it). */
  private closedEvents(t: ThreadRecord, reason: string, by: Principal): NewWebhookEvent[] | undefined {
    if (!this.events?.wants('thread.closed')) return undefined;
    return this.events.rows('thread.closed', orderKey.thread(t.id), { thread: threadData(t), reason, closedBy: by.name });
  }

  private async announce(t: ThreadRecord, type: ThreadMessageType, content: string, by: Principal): Promise<void> {
    const view: Omit<ThreadMessageView, 'id'> = {
      uid: `${type.toLowerCase()}-${t.id}-${this.clock.now()}`,
      type,
      content,
      status: 'SUCCESS',
      createdAt: new Date(this.clock.now()).toISOString(),
      channel: 'SYSTEM',
      extra: '',
      thread: { topic: dottedThread(t.topic) },
      user: { uid: by.name },
    };
    await this.storeAndBroadcast(t, view, by);
  }

  // ---- messages ----------------------------------------------------------------------

  /**
   * Validates, stores and broadcasts one message. `destination` is the
   * `/app/` suffix when it came over STOMP (the thread named in the message
   * must match it). Returns the stored view (the earlier one for a repeated uid).
   */
  async publish(p: Principal, raw: string | Record<string, unknown>, via: { destination?: string; sessionId: string }): Promise<ThreadMessageView> {
    const fields = readThreadMessage(raw, this.config.threadMaxContentBytes);
    const { uid, type, content } = fields;
    const topic = threadTopic(fields.threadId);
    if (via.destination !== undefined && threadTopic(via.destination) !== topic) {
      throw new AppRefusal(`thread ${dottedThread(topic)} does not match the destination /app/${via.destination}`);
    }
    const t = await this.load(topic);
    if (!t) throw new ThreadMissing(`no thread ${dottedThread(topic)}; create it with POST /api/v1/thread`);
    if (!this.mayJoin(p, t)) throw new AppForbidden(`you are not a member of thread ${dottedThread(topic)}`);
    if (t.record.status === 'CLOSED') throw new AppRefusal(`thread ${dottedThread(topic)} is closed`);
    const view = authoredView(fields, p, this.clock.now());

    if (EPHEMERAL.has(type)) {
      const key = `${via.sessionId}\u0000${topic}`;
      let bucket = this.typing.get(key);
      if (!bucket) {
        if (this.typing.size > 100_000) this.typing.clear();
        this.typing.set(key, (bucket = new TokenBucket(this.config.threadTypingPerSecond, this.clock)));
      }
      if (bucket.take() > 0) throw new AppRefusal(`${type} too often: at most ${this.config.threadTypingPerSecond} per second`);
      this.broadcast(t.record, { id: '', ...view });
      return { id: '', ...view };
    }
    if (RECEIPTS.has(type) || type === 'RECALL' || type === 'RATE_SUBMIT') {
      const original = content ? await this.store.getThreadMessage(t.record.id, content) : null;
      if (!original) throw new AppRefusal(`${type} names message uid ${JSON.stringify(content)}, which this thread does not have`);
      if (type === 'RECALL') {
        if (original.author !== p.userId) throw new AppRefusal('only the author of a message can recall it');
        const age = this.clock.now() - original.createdAt;
        if (age > this.config.threadRecallWindowSeconds * 1000) {
          throw new AppRefusal(`the ${this.config.threadRecallWindowSeconds}-second recall window for this message has passed`);
        }
      }
      const existing = await this.store.getThreadMessage(t.record.id, uid);
      if (!existing) {
        if (RECEIPTS.has(type)) await this.store.setThreadReceipt(t.record.id, content, p.userId, type as 'READ' | 'DELIVERED', this.clock.now());
        if (type === 'RECALL') await this.store.markRecalled(t.record.id, content);
      }
    }
    return this.storeAndBroadcast(t.record, view, p);
  }

  private async storeAndBroadcast(t: ThreadRecord, view: Omit<ThreadMessageView, 'id'>, author: Principal): Promise<ThreadMessageView> {
    const hooks = this.events?.wants('thread.message') ? this.events : undefined;
    const events = hooks && ((r: ThreadMessageRecord) => hooks.rows('thread.message', orderKey.thread(t.id), { thread: threadData(t), author: author.userId, message: viewOf(r) }));
    const { record, duplicate } = await this.store.addThreadMessage(
      { threadId: t.id, uid: view.uid, type: view.type, author: author.userId, body: JSON.stringify(view), createdAt: this.clock.now() },
      events,
    );
    const stored = viewOf(record);
    if (!duplicate) this.broadcast(t, stored);
    return stored;
  }

  private toCore(t: ThreadRecord, view: ThreadMessageView): CoreMessage {
    const members = this.cache.get(t.topic)?.members ?? new Set(t.members.map((m) => m.userId));
    return createMessage({
      target: { kind: 'topic', topic: t.topic },
      body: Buffer.from(JSON.stringify(view)),
      contentType: 'application/json',
      recordId: view.id || undefined,
      audience: members,
    });
  }

  private broadcast(t: ThreadRecord, view: ThreadMessageView): void {
    this.broker.publishTopic(this.toCore(t, view));
  }

  async history(p: Principal, id: string, opts: { before?: string; after?: string; limit: number }): Promise<ThreadMessageView[]> {
    const t = await this.getFor(p, id);
    const rows = await this.store.threadHistory(t.id, {
      ...(opts.before !== undefined ? { beforeSeq: opts.before } : {}),
      ...(opts.after !== undefined ? { afterSeq: opts.after } : {}),
      limit: opts.limit,
    });
    return rows.map((r) => viewOf(r));
  }

  async receipts(p: Principal, id: string, uid: string): Promise<{ userId: string; status: string; updatedAt: string }[]> {
    const t = await this.getFor(p, id);
    return (await this.store.threadReceipts(t.id, uid)).map((r) => ({ ...r, updatedAt: new Date(r.updatedAt).toISOString() }));
  }

  // ---- TopicAuthority --------------------------------------------------------------

  async authorize(p: Principal, filter: string): Promise<string | undefined> {
    if (filter.includes('+') || filter.includes('#')) return undefined; // thread messages carry their own audience
    const t = await this.load(filter);
    if (t && !this.mayJoin(p, t)) return `you are not a member of thread ${dottedThread(filter)}`;
    return undefined;
  }

  /**
   * A thread's topic is written by this service only: members send through
   * `/app/{thread}` or the HTTP send, which check membership and stamp the
   * sender. A direct publish would let anyone forge a member's message.
   * Synchronous from the cache on a single node (misses included); in a
   * cluster, misses are remembered for NOT_A_THREAD_MS (see `notThreads`).
   */
  publishRefusal(topic: string): string | undefined | Promise<string | undefined> {
    const cached = this.cache.get(topic);
    if (cached) return threadRefusal(topic);
    if (cached === null) return undefined;
    const until = this.notThreads.get(topic);
    if (until !== undefined) {
      if (this.clock.now() < until) return undefined;
      this.notThreads.delete(topic);
    }
    return this.load(topic).then((t) => (t ? threadRefusal(topic) : undefined));
  }

  /** `since` is a history position (the `id` of the last message seen) or a time (ISO 8601 or epoch ms). */
  async backlog(p: Principal, topic: string, since: string): Promise<CoreMessage[] | undefined> {
    const t = await this.load(topic);
    if (!t || !this.mayJoin(p, t)) return undefined;
    const asTime = /^\d{13,}$/.test(since) ? Number(since) : /^\d+$/.test(since) ? undefined : Date.parse(since);
    if (asTime !== undefined && Number.isNaN(asTime)) return undefined;
    const rows = await this.store.threadHistory(t.record.id, asTime !== undefined ? { sinceTime: asTime, limit: 10_000 } : { afterSeq: since, limit: 10_000 });
    return rows.map((r) => this.toCore(t.record, viewOf(r)));
  }
}
