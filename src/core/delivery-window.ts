/**
 * The delivery policy of one connection, the same in every protocol: send a
 * message now or hold it; hold within bounds of messages and bytes; cut the
 * connection when a client falls further behind; send what is held, oldest
 * first, when room opens.
 *
 * A protocol keeps its own idea of "room" (STOMP: unacknowledged messages per
 * subscription; MQTT: the client's receive maximum; the JSON WebSocket: one
 * window for the user's messages) and its own in-flight bookkeeping (ack ids,
 * packet ids, message ids). What it hands to this module is the answer to
 * "may one more go now?", and the bytes each message pins. The window owns
 * the rest:
 *
 * - `offer`: a message goes now only if nothing waits before it in its queue
 *   and the protocol says there is room; otherwise it is held, and the answer
 *   says whether the connection is now over its bounds (cut it).
 * - `drain`: room opened; held messages go out in the order they arrived on
 *   the connection, across all its queues, each while its queue has room.
 * - `release`: a queue ends; what it held goes back to the broker (or
 *   `takeAll`, for a protocol that keeps it elsewhere).
 *
 * The bytes are counted by the connection's DeliveryBudget (in flight plus
 * held, bounded by maxHeldBytesPerConnection); the socket's own backlog is
 * bounded by slowConsumerBytes (`writable`, `backedUp`).
 *
 * Every answer that says "cut" (from `offer`, `holdAside` or `backedUp`) is
 * a slow-consumer disconnect, and the window tells `onCut` of the first one
 * (herald_slow_consumer_disconnects_total): counted here, once per
 * connection, whatever the protocol.
 */
import type { Delivery } from './consumer.js';
import { DeliveryBudget } from './delivery-budget.js';

/** What a held message must tell the window: the bytes it pins, and how to give it back. */
export interface HeldMessage {
  readonly bytes: number;
  readonly delivery: Delivery;
}

/** Why a connection is cut as a slow consumer: over its byte budget, or too many messages held in one queue. */
export type SlowConsumerCut =
  | { readonly over: 'bytes'; readonly reason: string }
  | { readonly over: 'messages'; readonly held: number; readonly limit: number };

/** What became of an offered message: write it now, it is held, or the connection must be cut (the message is held until then). */
export type Offer = 'send' | 'held' | SlowConsumerCut;

/**
 * Messages of one queue (a STOMP subscription, an MQTT or JSON WebSocket
 * connection) waiting for room, oldest first, bounded in count.
 */
export class HeldQueue<T extends HeldMessage> {
  private readonly items: { item: T; seq: number }[] = [];

  constructor(
    /** Held messages beyond this many cut the connection. */
    readonly maxMessages: number,
  ) {}

  get length(): number {
    return this.items.length;
  }

  /** Arrival number (on the connection) of the oldest held message, or undefined when none is held. */
  get oldest(): number | undefined {
    return this.items[0]?.seq;
  }

  /** The held messages, oldest first (to look at; the window moves them). */
  *[Symbol.iterator](): IterableIterator<T> {
    for (const e of this.items) yield e.item;
  }

  /** @internal the window's */
  push(item: T, seq: number): void {
    this.items.push({ item, seq });
  }

  /** @internal the window's */
  shift(): T | undefined {
    return this.items.shift()?.item;
  }

  /** @internal the window's */
  clear(): void {
    this.items.length = 0;
  }
}

export interface DeliveryWindowLimits {
  /** Bytes the connection may pin, in flight and held (maxHeldBytesPerConnection). */
  maxHeldBytes: number;
  /** Bytes written to the socket and not yet taken by the network (slowConsumerBytes). */
  maxBufferedBytes: number;
  /** Told once, at the first cut the window answers (the protocol then cuts the connection). */
  onCut?: () => void;
}

export class DeliveryWindow {
  /** In-flight and held bytes: protocols call `fly`/`land` on it as they send and settle. */
  readonly budget: DeliveryBudget;
  readonly maxBufferedBytes: number;
  private seq = 0;
  private onCut: (() => void) | undefined;

  constructor(limits: DeliveryWindowLimits) {
    this.budget = new DeliveryBudget(limits.maxHeldBytes);
    this.maxBufferedBytes = limits.maxBufferedBytes;
    this.onCut = limits.onCut;
  }

  /** A cut answered: counted the first time only (a connection is cut once, however many answers say so before it closes). */
  private cut<T>(answer: T): T {
    const told = this.onCut;
    this.onCut = undefined;
    told?.();
    return answer;
  }

  /** A new queue of held messages on this connection, cut past `maxMessages`. */
  queue<T extends HeldMessage>(maxMessages: number): HeldQueue<T> {
    return new HeldQueue<T>(maxMessages);
  }

  /** Whether one more message may be in flight as far as bytes go (the protocol adds its count window). */
  mayFly(): boolean {
    return this.budget.mayFly();
  }

  /**
   * A message for `queue` arrives. `room`: whether the protocol's own window
   * would let one more go now. It goes now ('send') only when nothing waits
   * before it; otherwise it joins the queue, and when the connection then
   * pins more than its byte budget, or the queue holds more than its bound,
   * the answer is the cut to make (bytes are checked first).
   */
  offer<T extends HeldMessage>(queue: HeldQueue<T>, item: T, room: boolean): Offer {
    if (queue.length === 0 && room) return 'send';
    queue.push(item, ++this.seq);
    if (!this.budget.hold(item.bytes)) return this.cut({ over: 'bytes', reason: this.budget.describe() });
    if (queue.length > queue.maxMessages) return this.cut({ over: 'messages', held: queue.length, limit: queue.maxMessages });
    return 'held';
  }

  /**
   * Bytes held outside the window's queues (MQTT's messages waiting for the
   * live stream while a persistent session replays): false when the
   * connection now pins more than its byte budget, a cut.
   */
  holdAside(bytes: number): boolean {
    return this.budget.hold(bytes) || this.cut(false);
  }

  /**
   * Room opened: held messages go to `send`, oldest first across `queues`
   * (in the order they arrived on the connection), while `room(queue)` says
   * their queue may send one more; a queue without room is passed over.
   * Each message leaves the held bytes before `send` sees it. Returns how
   * many were sent.
   */
  drain<T extends HeldMessage>(queues: Iterable<HeldQueue<T>>, room: (queue: HeldQueue<T>) => boolean, send: (item: T, queue: HeldQueue<T>) => void): number {
    const list = Array.isArray(queues) ? (queues as HeldQueue<T>[]) : [...queues];
    let sent = 0;
    for (;;) {
      let next: HeldQueue<T> | undefined;
      let oldest = Infinity;
      for (const q of list) {
        const seq = q.oldest;
        if (seq !== undefined && seq < oldest && room(q)) {
          oldest = seq;
          next = q;
        }
      }
      if (!next) return sent;
      const item = next.shift()!;
      this.budget.unhold(item.bytes);
      send(item, next);
      sent++;
    }
  }

  /** The queue ends (unsubscribe, connection closed): what it held goes back to the broker. */
  release<T extends HeldMessage>(queue: HeldQueue<T>): void {
    for (const item of queue) {
      this.budget.unhold(item.bytes);
      item.delivery.settle?.('requeue');
    }
    queue.clear();
  }

  /**
   * Takes every held message out of the queue, oldest first, without
   * settling them, for the protocol to dispose of (MQTT keeps a persistent
   * session's in its stored queue).
   */
  takeAll<T extends HeldMessage>(queue: HeldQueue<T>): T[] {
    const items = [...queue];
    for (const item of items) this.budget.unhold(item.bytes);
    queue.clear();
    return items;
  }

  /** The connection ended and gave its messages back: nothing counts any more. */
  clear(): void {
    this.budget.clear();
  }

  /** Whether the socket's backlog leaves room to write more (under half of maxBufferedBytes). */
  writable(buffered: number): boolean {
    return buffered < this.maxBufferedBytes / 2;
  }

  /** Whether the socket's backlog is past maxBufferedBytes: the client does not read, cut it. */
  backedUp(buffered: number): boolean {
    return buffered > this.maxBufferedBytes && this.cut(true);
  }

  /** The reason given to a client cut because its socket backlog is past the bound. */
  describeBacklog(): string {
    return `more than ${this.maxBufferedBytes} bytes are waiting to be read by this client`;
  }
}
