/**
 * Point-to-point queues (`/queue/name`): each message is stored until one
 * consumer acknowledges it; consumers compete, round-robin, within their
 * windows.
 *
 * The contract:
 * - `publish(msg)` resolves once the message is in the store. When a local
 *   consumer has room it is stored already claimed by this node and handed
 *   out here; otherwise it is stored unclaimed and every node with
 *   consumers of the queue is poked.
 * - A node hands out only messages it has claimed in the store; claims are
 *   made in batches when its consumers have room and the store may hold
 *   more (after a subscribe, a poke, a release, or `recheck`).
 * - Each message goes to one consumer with `hasCapacity()`, round-robin
 *   (a consumer subscribed twice to a queue is there once).
 *   A consumer whose window opens again says so with `consumerReady`.
 * - Settling: `ack` removes the message from the store. `nack` and
 *   `requeue` put it back at the head of this node's line, marked
 *   redelivered, for the next consumer with room; when the queue has no
 *   consumer left here, the claim goes back to the store for other nodes.
 * - When the last local consumer leaves, what this node claimed and has not
 *   handed out goes back to the store; `releaseAll` does the same for every
 *   queue at shutdown and waits for the store.
 * - In a cluster, a node whose lease in the store is not surely its own
 *   (`leased` false) claims nothing: the others may be about to fence it
 *   and hand its claims to someone else. A fenced node forgets its claims.
 */
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { ClusterLink } from './cluster-link.js';
import { OutageLog } from './background.js';
import { deliverSafely, type Consumer } from './consumer.js';
import { createMessage, withMessageId, type CoreMessage } from './message.js';

/** The store operations the queue engine uses: write, claim, hand back and remove queue messages. */
export type QueueClaims = Pick<Store, 'enqueue' | 'claimQueue' | 'releaseQueued' | 'dequeue'>;

/** What the queue engine asks of the cluster. */
export type QueueLink = Pick<ClusterLink, 'owner' | 'leased' | 'interest' | 'pokeQueue'>;

export interface QueueLimits {
  /** Queue messages held in memory per queue; more stay in the store until needed. */
  queueMemoryMessages: number;
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

const CLAIM_BATCH = 500;

export class Queues {
  private readonly queues = new Map<string, QueueState>();
  private readonly queuesOf = new Map<Consumer, Set<QueueState>>();
  /** Claims being handed back to the store; awaited before the store closes. */
  private readonly releases = new Set<Promise<unknown>>();
  private link: QueueLink | undefined;
  /** Claims, removals and releases that failed: logged once per store outage (each is tried again later). */
  private readonly storeOutage: OutageLog;

  constructor(
    private readonly store: QueueClaims,
    private readonly log: Logger,
    private readonly limits: QueueLimits,
    /** This node's owner id when alone: who claims queue messages. */
    private readonly localId: string,
  ) {
    this.storeOutage = new OutageLog(log, 'queue claims and removals in the store');
  }

  setClusterLink(link: QueueLink): void {
    this.link = link;
  }

  /** The owner of this node's claims. */
  get nodeId(): string {
    return this.link?.owner ?? this.localId;
  }

  subscribe(name: string, consumer: Consumer): void {
    const q = this.queue(name);
    if (q.consumers.length === 0) {
      this.link?.interest('queue', name, true);
      q.mayHaveMore = true;
    }
    if (!q.consumers.includes(consumer)) q.consumers.push(consumer);
    let set = this.queuesOf.get(consumer);
    if (!set) this.queuesOf.set(consumer, (set = new Set()));
    set.add(q);
    this.dispatch(q);
  }

  unsubscribe(name: string, consumer: Consumer): void {
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
  poked(name: string): void {
    const q = this.queues.get(name);
    if (!q || q.consumers.length === 0) return;
    if (q.claiming) q.pokedWhileClaiming = true;
    q.mayHaveMore = true;
    this.dispatch(q);
  }

  /** Stores the message (durable when this resolves), then hands it to a consumer; resolves to its store id. */
  async publish(msg: CoreMessage): Promise<string> {
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
    if (takeHere && q && q.consumers.length > 0) {
      q.ready.push({ storeId, msg: withId(msg, 'q' + storeId), redelivered: false });
      this.dispatch(q);
    } else if (takeHere) {
      // Its consumers left while it was being written (the queue may linger while some message is out).
      this.release(undefined, [{ storeId, redelivered: false }], name);
    } else {
      if (q) this.poked(name);
      this.link?.pokeQueue(name);
    }
    return storeId;
  }

  /** The cluster link is back (and each heartbeat): every local queue looks for waiting messages again. */
  recheck(): void {
    for (const q of this.queues.values()) {
      q.mayHaveMore = true;
      this.dispatch(q);
    }
  }

  /** Hands back every claimed, undelivered message (shutdown) and waits for the store. */
  async releaseAll(): Promise<void> {
    for (const q of this.queues.values()) {
      this.release(q, q.ready);
      q.ready = [];
    }
    while (this.releases.size > 0) await Promise.all([...this.releases]);
  }

  /** This node was fenced: what it claimed and had not handed out went to other nodes; look at the store again. */
  forgetClaims(): void {
    for (const q of this.queues.values()) {
      q.ready = [];
      q.mayHaveMore = true;
    }
  }

  /** Queue depth in memory and in flight. */
  stats(name: string): { ready: number; inflight: number; consumers: number } | undefined {
    const q = this.queues.get(name);
    return q && { ready: q.ready.length, inflight: q.inflight, consumers: q.consumers.length };
  }

  /** Every queue with consumers or messages out on this node: held in memory, in flight, consumers. */
  figures(): { name: string; ready: number; inflight: number; consumers: number }[] {
    return [...this.queues.values()].map((q) => ({ name: q.name, ready: q.ready.length, inflight: q.inflight, consumers: q.consumers.length }));
  }

  private queue(name: string): QueueState {
    let q = this.queues.get(name);
    if (!q) {
      q = { name, consumers: [], next: 0, ready: [], mayHaveMore: true, claiming: false, pokedWhileClaiming: false, inflight: 0 };
      this.queues.set(name, q);
    }
    return q;
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
      this.deliverEntry(q, consumer, entry);
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

  private deliverEntry(q: QueueState, consumer: Consumer, entry: QueuedEntry): void {
    q.inflight++;
    let settled = false;
    deliverSafely(this.log, consumer, entry.msg, {
      redelivered: entry.redelivered,
      settle: (outcome) => {
        if (settled) return;
        settled = true;
        q.inflight--;
        if (outcome === 'ack') {
          // Not removed: it is delivered again (redelivered) after a restart or a takeover; logged once per outage.
          this.store.dequeue(entry.storeId).then(
            () => this.storeOutage.ok(),
            (err: unknown) => this.storeOutage.failed(err),
          );
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

  /** Alone, always; in a cluster, only while this node's lease is surely its own (see ClusterLink.leased). */
  private mayClaim(): boolean {
    return this.link === undefined || this.link.leased;
  }

  /** Claims waiting messages from the store: a batch alone, a few per ready consumer in a cluster. */
  private async claim(q: QueueState): Promise<void> {
    if (q.claiming || !this.mayClaim() || !q.consumers.some((c) => c.hasCapacity())) return;
    q.claiming = true;
    q.pokedWhileClaiming = false;
    const limit = this.link ? Math.min(CLAIM_BATCH, 4 * q.consumers.filter((c) => c.hasCapacity()).length) : CLAIM_BATCH;
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
      this.storeOutage.failed(err);
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
      (err: unknown) => this.storeOutage.failed(err),
    );
    this.releases.add(p);
    void p.finally(() => this.releases.delete(p));
  }
}

/** The published message under its queue id (`q` + store id), with no encodings cached under the old one. */
function withId(msg: CoreMessage, id: string): CoreMessage {
  return withMessageId(msg, id);
}
