/**
 * What a subscriber is to the broker's engines (topics, user mailboxes,
 * queues), and how one delivery is settled. Protocol adapters implement
 * `Consumer`, one per subscription; the engines call `deliver` and, for
 * queues, ask `hasCapacity` first.
 */
import type { Logger } from '../log.js';
import type { Principal } from './auth.js';
import type { CoreMessage } from './message.js';

export type Outcome = 'ack' | 'nack' | 'requeue';

export interface Delivery {
  redelivered: boolean;
  /**
   * Present when the broker must learn what became of the message:
   * `ack` (consumed), `nack` (refused: give it to someone again),
   * `requeue` (the consumer went away before acknowledging). The first
   * call counts; later ones are ignored.
   */
  settle: ((outcome: Outcome) => void) | undefined;
}

/** One subscription of one session, as the broker sees it. Adapters implement it. */
export interface Consumer {
  readonly sessionId: string;
  readonly principal: Principal;
  /** Writes the message (or holds it if the client's window is full). */
  deliver(msg: CoreMessage, delivery: Delivery): void;
  /** Whether the consumer can take one more queue message now. */
  hasCapacity(): boolean;
}

/** A delivery nobody needs to hear back from (topics). */
export const NO_SETTLE: Delivery = { redelivered: false, settle: undefined };

/** One consumer's failure must not stop the fan-out to the others, nor reach the publisher. */
export function deliverSafely(log: Logger, consumer: Consumer, msg: CoreMessage, delivery: Delivery): void {
  try {
    consumer.deliver(msg, delivery);
  } catch (err) {
    log.error({ err, session: consumer.sessionId, messageId: msg.id }, 'delivery to a consumer failed');
  }
}
