/**
 * The message service's messages: one message, one delivery row per
 * receiver with its own status, and retention.
 * Implemented by sqlite/messages.ts and postgres/messages.ts.
 *
 * Changes take the webhook events that describe them (../webhooks.ts),
 * written in the same transaction, so an event exists exactly when its
 * change does.
 */
import type { EventsOf, NewWebhookEvent } from './webhooks.js';

export const DELIVERY_STATUSES = ['PENDING', 'DELIVERED', 'READ'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export interface NewMessage {
  sender: string;
  title: string;
  content: string;
  type: string;
  createdAt: number;
  /** User ids; one delivery row each, PENDING. */
  receivers: readonly string[];
}

export interface StoredMessage {
  id: string;
  sender: string;
  title: string;
  content: string;
  type: string;
  createdAt: number;
}

export interface Receipt {
  receiver: string;
  status: DeliveryStatus;
  updatedAt: number;
}

export interface MessageRecord extends StoredMessage {
  receivers: Receipt[];
}

export interface MessageQuery {
  /** 1-based. */
  page: number;
  size: number;
  status?: DeliveryStatus;
  sender?: string;
  receiver?: string;
  type?: string;
  /** createdAt >= from (ms). */
  from?: number;
  /** createdAt <= to (ms). */
  to?: number;
}

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  size: number;
}

export interface MessageStore {
  /** Stores a message and its delivery rows in one transaction, with the events `events` builds from its id; returns the id. */
  insertMessage(message: NewMessage, events?: EventsOf<string>): Promise<string>;
  /** A message with its delivery rows (by receiver), or null. */
  getMessage(id: string): Promise<MessageRecord | null>;
  /** A receiver's PENDING messages, oldest first. */
  pendingFor(receiver: string, limit: number): Promise<StoredMessage[]>;
  /**
   * Moves a delivery row forward (PENDING → DELIVERED → READ; never back),
   * writing `events` with it when it moved. Returns false when the row does
   * not exist or is already at or past `status`.
   */
  setDeliveryStatus(messageId: string, receiver: string, status: DeliveryStatus, at: number, events?: readonly NewWebhookEvent[]): Promise<boolean>;
  /** Newest first. `status` and `receiver` apply to the same delivery row. */
  queryMessages(query: MessageQuery): Promise<Page<MessageRecord>>;
  /** Deletes a message with its delivery rows; false if there was none. */
  deleteMessage(id: string): Promise<boolean>;
  /**
   * Retention, one bounded step: deletes up to `batch` messages created before
   * `olderThan`, and for each receiver with more than `maxPerReceiver` delivery
   * rows, up to `batch` of its oldest rows (and a message once none of its rows
   * remain). Returns how much it removed; 0 means done for now.
   */
  pruneMessages(olderThan: number, maxPerReceiver: number, batch: number): Promise<number>;
}
