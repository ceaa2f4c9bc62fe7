/**
 * What the console reads of the stored queues, without changing anything:
 * figures per point-to-point queue, per persistent MQTT session and per
 * message-service mailbox, and a queue's messages a page at a time.
 * Implemented by sqlite/inspect.ts and postgres/inspect.ts. Each figure is
 * one grouped query, run when an administrator asks, never on a hot path.
 */
import type { QueuedMessage } from './queues.js';

/** A point-to-point queue as stored now. */
export interface QueueSummary {
  queue: string;
  /** Messages kept (not yet acknowledged by any consumer). */
  messages: number;
  /** Of those, claimed by a node: handed to a consumer and not acknowledged, or about to be. */
  claimed: number;
  /** Of those, handed out before and not acknowledged then. */
  redelivered: number;
  /** When the oldest was published (ms). */
  oldestAt: number;
  /** Their bodies' bytes. */
  bytes: number;
}

/** A queue message as the console shows it: who holds it, if anyone. */
export interface PeekedQueueMessage extends QueuedMessage {
  /** The node incarnation that claimed it (`node#epoch`), or null while it waits for a consumer. */
  claimedBy: string | null;
}

/** The stored queue of a persistent MQTT session. */
export interface MqttQueueSummary {
  clientId: string;
  messages: number;
  /** Sent with a packet id and awaiting the client's acknowledgement. */
  sent: number;
  oldestAt: number;
  bytes: number;
}

/** A message-service mailbox: messages stored for a receiver and not yet delivered. */
export interface PendingSummary {
  receiver: string;
  pending: number;
  oldestAt: number;
}

export interface InspectStore {
  /** Queues with messages kept, the most first, at most `limit`. */
  queueSummaries(limit: number): Promise<QueueSummary[]>;
  /** A queue's messages oldest first, after the id `afterId` when given, at most `limit`. */
  peekQueue(queue: string, limit: number, afterId?: string): Promise<PeekedQueueMessage[]>;
  /** Persistent MQTT sessions with stored messages, the most first, at most `limit`. */
  mqttQueueSummaries(limit: number): Promise<MqttQueueSummary[]>;
  /** Receivers with messages PENDING in the message service, the most first, at most `limit`. */
  pendingSummaries(limit: number): Promise<PendingSummary[]>;
}
