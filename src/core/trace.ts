/**
 * Traces of a topic filter for the console's live debug: each message that
 * passes through the broker to a matching topic, with its publisher (user,
 * session, protocol) and its receivers, as it happens.
 *
 * - Free when no trace is open: the broker's tap is unset, and its publish
 *   paths check one field. While a trace is open, a publish costs one
 *   lookup of its topic among the traced filters, and only a traced
 *   message is looked at further.
 * - Capped: at most `maxPerSecond` events per second per trace on each
 *   node; the rest are counted as skipped, not kept.
 * - Bounded: a trace keeps its last TRACE_KEPT events; one nobody reads
 *   for TRACE_IDLE_MS closes by itself; a node holds at most MAX_TRACES.
 * - Cluster-wide: the node where a trace is opened (its owner) tells the
 *   others (`trace.open`, repeated while it is read, so a node that joins
 *   later starts too); each node traces what passes through it and sends
 *   its events to the owner in batches (`trace.events`). A message
 *   published on one node and delivered on others gives one event per
 *   node, with the same messageId; the publishing node's names the publisher.
 */
import { randomBytes } from 'node:crypto';
import type { ClusterControl } from './cluster-link.js';
import type { Consumer } from './consumer.js';
import type { CoreMessage } from './message.js';
import { TopicIndex } from './router.js';
import type { SessionRegistry } from './session.js';

export const TRACE_KEPT = 500;
export const TRACE_IDLE_MS = 60_000;
export const MAX_TRACES = 10;
/** How many receivers an event names (the count is always whole). */
const NAMED_RECEIVERS = 20;
const PREVIEW_CHARS = 200;
const FLUSH_MS = 300;
/** How often the owner repeats `trace.open` while the trace is read. */
const REPEAT_MS = 10_000;

/** What the broker asks of a tap (see Broker.setTap). */
export interface BrokerTap {
  /** Whether a message to `topic` is traced (asked on every topic publish while a trace is open). */
  wants(topic: string): boolean;
  /** A traced message passed: the consumers on this node it went to, and whether it was published here or came from another node. */
  passed(msg: CoreMessage, receivers: readonly Consumer[], origin: 'published' | 'received'): void;
}

export interface TraceParty {
  sessionId: string;
  user: string;
  protocol: string;
}

export interface TraceEvent {
  seq: number;
  at: number;
  node: string;
  messageId: string;
  topic: string;
  origin: 'published' | 'received';
  /** Published here: its session; null when it had none here (the HTTP API, the server) or came from another node. */
  publisher: TraceParty | null;
  receivers: TraceParty[];
  receiverCount: number;
  qos: number;
  retain: boolean;
  bytes: number;
  contentType: string | null;
  /** The payload's start as text, or in hex when it is not text. */
  preview: string;
}

/** A trace as this node runs it. */
interface Running {
  id: string;
  filter: string;
  maxPerSecond: number;
  owner: string;
  /** The owner's: events from every node, oldest first, and those skipped. */
  events: TraceEvent[];
  skipped: number;
  seq: number;
  /** This node's cap: events this second. */
  windowStart: number;
  inWindow: number;
  /** Another node's trace: events waiting to be sent to the owner. */
  outbox: Omit<TraceEvent, 'seq'>[];
  outSkipped: number;
  expiresAt: number;
  repeatedAt: number;
}

export interface TraceSpec {
  id: string;
  filter: string;
  maxPerSecond: number;
  owner: string;
}

export class Tracer implements BrokerTap {
  private readonly traces = new Map<string, Running>();
  private readonly index = new TopicIndex<Running>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nodeId: string,
    private readonly sessions: SessionRegistry,
    /** Sets or unsets the broker's tap (Broker.setTap). */
    private readonly setTap: (tap: BrokerTap | undefined) => void,
    private readonly cluster: ClusterControl | undefined,
    private readonly now: () => number = Date.now,
  ) {
    cluster?.on<TraceSpec>('trace.open', (spec) => void this.run(spec));
    cluster?.on<{ id: string }>('trace.close', (b) => void this.end(b.id));
    cluster?.on<{ id: string; events: Omit<TraceEvent, 'seq'>[]; skipped: number }>('trace.events', (b) => void this.received(b.id, b.events, b.skipped));
  }

  /** Opens a trace owned by this node; undefined when MAX_TRACES are open already. */
  open(filter: string, maxPerSecond: number): TraceSpec | undefined {
    if (this.traces.size >= MAX_TRACES) return undefined;
    const spec = { id: randomBytes(8).toString('hex'), filter, maxPerSecond, owner: this.nodeId };
    this.run(spec);
    this.cluster?.broadcast('trace.open', spec);
    return spec;
  }

  /** Events after `after` (a seq) of a trace this node owns, or undefined when there is no such trace; reading keeps it open. */
  read(id: string, after = 0): { spec: TraceSpec; events: TraceEvent[]; skipped: number } | undefined {
    const t = this.traces.get(id);
    if (!t || t.owner !== this.nodeId) return undefined;
    const now = this.now();
    t.expiresAt = now + TRACE_IDLE_MS;
    if (now - t.repeatedAt >= REPEAT_MS) {
      t.repeatedAt = now;
      this.cluster?.broadcast('trace.open', this.spec(t));
    }
    return { spec: this.spec(t), events: t.events.filter((e) => e.seq > after), skipped: t.skipped };
  }

  /** Closes a trace this node owns, on every node; false when there is none. */
  close(id: string): boolean {
    const t = this.traces.get(id);
    if (!t || t.owner !== this.nodeId) return false;
    this.end(id);
    this.cluster?.broadcast('trace.close', { id });
    return true;
  }

  stop(): void {
    for (const id of [...this.traces.keys()]) this.end(id);
  }

  // ---- the broker's tap --------------------------------------------------------

  wants(topic: string): boolean {
    let yes = false;
    this.index.match(topic, () => (yes = true));
    return yes;
  }

  passed(msg: CoreMessage, receivers: readonly Consumer[], origin: 'published' | 'received'): void {
    const topic = (msg.target as { topic: string }).topic;
    const now = this.now();
    let event: Omit<TraceEvent, 'seq'> | undefined;
    this.index.match(topic, (t) => {
      if (now - t.windowStart >= 1000) {
        t.windowStart = now;
        t.inWindow = 0;
      }
      if (++t.inWindow > t.maxPerSecond) {
        if (t.owner === this.nodeId) t.skipped++;
        else t.outSkipped++;
        return;
      }
      event ??= this.describe(msg, topic, receivers, origin, now);
      if (t.owner === this.nodeId) this.keep(t, event);
      else t.outbox.push(event);
    });
  }

  // ---- inside --------------------------------------------------------------------

  private spec(t: Running): TraceSpec {
    return { id: t.id, filter: t.filter, maxPerSecond: t.maxPerSecond, owner: t.owner };
  }

  /** Starts (or, already running, keeps alive) a trace here. */
  private run(spec: TraceSpec): void {
    const now = this.now();
    const existing = this.traces.get(spec.id);
    if (existing) {
      existing.expiresAt = now + TRACE_IDLE_MS;
      return;
    }
    if (spec.owner !== this.nodeId && this.traces.size >= MAX_TRACES) return;
    const t: Running = { ...spec, events: [], skipped: 0, seq: 0, windowStart: now, inWindow: 0, outbox: [], outSkipped: 0, expiresAt: now + TRACE_IDLE_MS, repeatedAt: now };
    this.traces.set(spec.id, t);
    this.index.add(spec.filter, t);
    if (this.traces.size === 1) {
      this.setTap(this);
      this.timer = setInterval(() => this.tick(), FLUSH_MS);
      this.timer.unref();
    }
  }

  private end(id: string): void {
    const t = this.traces.get(id);
    if (!t) return;
    this.flush(t);
    this.traces.delete(id);
    this.index.remove(t.filter, t);
    if (this.traces.size === 0) {
      this.setTap(undefined);
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Every FLUSH_MS: other nodes' traces send what they saw; traces nobody reads end. */
  private tick(): void {
    const now = this.now();
    for (const t of [...this.traces.values()]) {
      if (now > t.expiresAt) {
        if (t.owner === this.nodeId) this.close(t.id);
        else this.end(t.id);
        continue;
      }
      this.flush(t);
    }
  }

  private flush(t: Running): void {
    if (t.owner === this.nodeId || (t.outbox.length === 0 && t.outSkipped === 0)) return;
    this.cluster?.send(t.owner, 'trace.events', { id: t.id, events: t.outbox, skipped: t.outSkipped });
    t.outbox = [];
    t.outSkipped = 0;
  }

  private received(id: string, events: Omit<TraceEvent, 'seq'>[], skipped: number): void {
    const t = this.traces.get(id);
    if (!t || t.owner !== this.nodeId) return;
    t.skipped += skipped;
    for (const e of events) this.keep(t, e);
  }

  private keep(t: Running, e: Omit<TraceEvent, 'seq'>): void {
    t.events.push({ ...e, seq: ++t.seq });
    if (t.events.length > TRACE_KEPT) t.events.splice(0, t.events.length - TRACE_KEPT);
  }

  private party(sessionId: string, consumer?: Consumer): TraceParty {
    const s = this.sessions.get(sessionId);
    if (s) return { sessionId, user: s.principal.name, protocol: s.protocol };
    // A shared group (share:{group}) or a consumer that is no session of this node's registry.
    return { sessionId, user: consumer ? consumer.principal.name : '', protocol: '' };
  }

  private describe(msg: CoreMessage, topic: string, receivers: readonly Consumer[], origin: 'published' | 'received', at: number): Omit<TraceEvent, 'seq'> {
    const head = msg.body.subarray(0, PREVIEW_CHARS * 4);
    return {
      at,
      node: this.nodeId,
      messageId: msg.id,
      topic,
      origin,
      publisher: origin === 'published' && msg.publisherSession !== undefined ? this.party(msg.publisherSession) : null,
      receivers: receivers.slice(0, NAMED_RECEIVERS).map((c) => this.party(c.sessionId, c)),
      receiverCount: receivers.length,
      qos: msg.qos,
      retain: msg.retain,
      bytes: msg.body.length,
      contentType: msg.contentType ?? null,
      preview: msg.textBody ? head.toString('utf8').slice(0, PREVIEW_CHARS) : msg.body.subarray(0, 64).toString('hex'),
    };
  }
}
