/**
 * The memory one connection may pin, in bytes, the same in every protocol.
 *
 * A connection pins a message while it is in flight (written, not yet
 * acknowledged) and while it waits for the client's window to open (held).
 * Counting messages alone is not enough: 1,000 unacknowledged 1 MiB bodies
 * are a gigabyte. So every connection has one budget of
 * `maxHeldBytesPerConnection`, shared by all its subscriptions:
 *
 * - in-flight messages may use half of it (`mayFly`); past that, further
 *   messages wait, as they do when the message-count window is full;
 * - when in-flight plus waiting bytes exceed the whole budget, the client is
 *   too slow to keep up and the connection is cut (`hold` returns false).
 *
 * Bytes are counted once per message per connection, whether or not the
 * same body is shared with other connections: the bound is per connection,
 * so no one connection can hold more than this much alive.
 */
import type { CoreMessage } from './message.js';

/** Bytes a message pins: its body and correlation data, plus a fixed allowance for headers and bookkeeping. */
export function pinnedSize(msg: CoreMessage): number {
  let n = 256 + msg.body.length + (msg.correlation?.length ?? 0);
  for (const [k, v] of msg.headers) n += k.length + v.length;
  return n;
}

export class DeliveryBudget {
  private inflight = 0;
  private held = 0;

  constructor(readonly limit: number) {}

  /** Bytes in flight plus bytes waiting. */
  get used(): number {
    return this.inflight + this.held;
  }

  get inflightBytes(): number {
    return this.inflight;
  }

  get heldBytes(): number {
    return this.held;
  }

  /**
   * Whether one more message may be sent unacknowledged now. With nothing in
   * flight the answer is always yes, so a single message larger than half
   * the budget still gets through.
   */
  mayFly(): boolean {
    return this.inflight === 0 || this.inflight < this.limit / 2;
  }

  /** A message was written and awaits its acknowledgement. */
  fly(bytes: number): void {
    this.inflight += bytes;
  }

  /** An in-flight message was acknowledged, requeued or dropped. */
  land(bytes: number): void {
    this.inflight = Math.max(0, this.inflight - bytes);
  }

  /** A message waits for the window; false when the connection now pins more than its budget (cut it). */
  hold(bytes: number): boolean {
    this.held += bytes;
    return this.inflight + this.held <= this.limit;
  }

  /** A waiting message left the queue (sent, or given back). */
  unhold(bytes: number): void {
    this.held = Math.max(0, this.held - bytes);
  }

  /** Forgets everything (the connection ended and gave its messages back). */
  clear(): void {
    this.inflight = 0;
    this.held = 0;
  }

  /** The reason given to a client that is cut for exceeding the budget. */
  describe(): string {
    return `slow consumer: ${this.used} bytes of messages wait for this client's acknowledgements (the limit is ${this.limit}, maxHeldBytesPerConnection); acknowledge faster or subscribe with fewer unacknowledged messages`;
  }
}
