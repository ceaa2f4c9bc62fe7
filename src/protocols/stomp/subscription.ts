/**
 * One STOMP subscription: the broker's consumer for it, with its ack mode,
 * what it sent and awaits acknowledgement for, and what it holds until the
 * client's window opens (through the connection's DeliveryWindow).
 */
import type { HeraldContext } from '../../context.js';
import type { Principal } from '../../core/auth.js';
import type { Consumer, Delivery, Outcome } from '../../core/broker.js';
import { pinnedSize } from '../../core/delivery-budget.js';
import type { DeliveryWindow, HeldQueue } from '../../core/delivery-window.js';
import type { CoreMessage, Target } from '../../core/message.js';
import type { Protocol } from '../../core/session.js';
import type { AckMode, MessageFrameSubscription, Version } from './message-frame.js';

/** What a subscription needs of its connection. */
export interface SubscriptionHost {
  readonly id: string;
  readonly principal: Principal;
  readonly ctx: HeraldContext;
  readonly protocol: Protocol;
  readonly closed: boolean;
  readonly version: Version;
  /** The wire framing (part of the key under which shared frames are cached). */
  readonly framing: string;
  readonly limits: { readonly maxUnacked: number; readonly maxHeld: number };
  readonly window: DeliveryWindow;
  readonly broker: HeraldContext['broker'];
  writable(): boolean;
  /** Writes one MESSAGE frame; returns the bytes it added to the message's cache of encoded frames. */
  sendMessage(sub: StompSubscription, msg: CoreMessage, redelivered: boolean): number;
  /** Sends ERROR with `message` and closes. */
  fail(message: string, detail: string): void;
}

export interface Unacked {
  msg: CoreMessage;
  delivery: Delivery;
  /** What it counts against the connection's byte budget. */
  bytes: number;
}

export interface Held {
  msg: CoreMessage;
  delivery: Delivery;
  bytes: number;
}

export class StompSubscription implements Consumer, MessageFrameSubscription {
  readonly unacked = new Map<string, Unacked>();
  /** Messages waiting for the client's window to open (topics and mailboxes), oldest first. */
  readonly held: HeldQueue<Held>;
  /** Key under which this subscription's MESSAGE frames are cached on a message. */
  readonly cacheKey: string;
  private recheck: NodeJS.Timeout | undefined;

  constructor(
    readonly conn: SubscriptionHost,
    readonly id: string,
    /** Destination as the client wrote it. */
    readonly destination: string,
    readonly target: Target,
    readonly ackMode: AckMode,
  ) {
    this.held = conn.window.queue(conn.limits.maxHeld);
    const destPart = target.kind === 'user' ? destination : '';
    this.cacheKey = `stomp\u0000${conn.framing}\u0000${conn.version}\u0000${ackMode === 'auto' ? 'a' : 'c'}\u0000${id}\u0000${destPart}`;
  }

  get sessionId(): string {
    return this.conn.id;
  }
  get principal(): Principal {
    return this.conn.principal;
  }

  /** Whether the window has room: in messages for this subscription, in bytes for the whole connection. */
  windowOpen(): boolean {
    return this.unacked.size < this.conn.limits.maxUnacked && this.conn.window.mayFly();
  }

  hasCapacity(): boolean {
    return this.ackMode === 'auto' ? this.conn.writable() : this.windowOpen() && this.conn.writable();
  }

  deliver(msg: CoreMessage, delivery: Delivery): void {
    if (this.conn.closed) {
      delivery.settle?.('requeue');
      return;
    }
    if (this.ackMode !== 'auto') {
      const offer = this.conn.window.offer(this.held, { msg, delivery, bytes: pinnedSize(msg) }, this.windowOpen());
      if (offer === 'held') return;
      if (offer !== 'send') {
        this.conn.fail(
          'slow consumer',
          offer.over === 'messages'
            ? `subscription ${this.id} has ${offer.held} messages waiting for acknowledgements; acknowledge faster or use ack:auto`
            : offer.reason,
        );
        return;
      }
    }
    this.write(msg, delivery);
  }

  /** Writes a message now: acknowledged at once in `auto` mode, else in flight until ACK/NACK. */
  write(msg: CoreMessage, delivery: Delivery): void {
    if (this.ackMode === 'auto') {
      this.conn.sendMessage(this, msg, delivery.redelivered);
      delivery.settle?.('ack');
      // A queue stops feeding a client whose socket is backed up; look again once it had time to drain.
      if (this.target.kind === 'queue' && !this.conn.writable() && !this.recheck) {
        this.recheck = setTimeout(() => {
          this.recheck = undefined;
          if (!this.conn.closed) this.conn.broker.consumerReady(this);
        }, 50);
      }
      return;
    }
    const ackId = `${msg.id}:${this.id}`;
    // Recorded before the write: a write that finds the client too slow closes the connection, which
    // gives back whatever is unacknowledged, this message included.
    const entry: Unacked = { msg, delivery, bytes: pinnedSize(msg) };
    this.unacked.set(ackId, entry);
    this.conn.window.budget.fly(entry.bytes);
    // The message stays alive until acknowledged, and so does the frame this connection encoded for it.
    const encoded = this.conn.sendMessage(this, msg, delivery.redelivered);
    if (encoded > 0 && !this.conn.closed) {
      entry.bytes += encoded;
      this.conn.window.budget.fly(encoded);
    }
  }

  /** ACK/NACK of `ackId`; cumulative in `client` mode. Returns false when unknown. */
  settle(ackId: string, outcome: Outcome): boolean {
    const entry = this.unacked.get(ackId);
    if (!entry) return false;
    if (this.ackMode === 'client') {
      for (const [k, u] of this.unacked) {
        this.unacked.delete(k);
        this.conn.window.budget.land(u.bytes);
        u.delivery.settle?.(outcome);
        if (k === ackId) break;
      }
    } else {
      this.unacked.delete(ackId);
      this.conn.window.budget.land(entry.bytes);
      entry.delivery.settle?.(outcome);
    }
    return true;
  }

  /** Sends held messages while the window has room; a queue is told when this consumer can take more. */
  drainHeld(): void {
    this.conn.window.drain([this.held], () => this.mayDrain(), (h) => this.write(h.msg, h.delivery));
    this.tellQueue();
  }

  /** Whether a held message may go out now. */
  mayDrain(): boolean {
    return this.windowOpen() && !this.conn.closed;
  }

  /** A queue consumer may have room again: the queue looks. */
  tellQueue(): void {
    if (this.target.kind === 'queue' && !this.conn.closed) this.conn.broker.consumerReady(this);
  }

  /** The subscription ends: whatever the client did not acknowledge goes back. */
  release(): void {
    clearTimeout(this.recheck);
    for (const u of this.unacked.values()) {
      this.conn.window.budget.land(u.bytes);
      u.delivery.settle?.('requeue');
    }
    this.unacked.clear();
    this.conn.window.release(this.held);
  }
}
